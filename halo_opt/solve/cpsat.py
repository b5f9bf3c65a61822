"""Exact solve with OR-Tools CP-SAT on the integer-scaled model of :mod:`.model`.

Scaling (CP-SAT needs integers):
- "≤ cap" rows (error budget, per-layer budgets, energy and latency caps) with float
  coefficients ``a`` and right-hand side ``b > 0`` are scaled by ``S = R/b``:
  ``Σ ceil(a·S)·x ≤ floor(b·S)`` — conservative, so a CP-SAT-feasible plan is feasible in
  float. The slack this can cost is at most ``Σ_i ub_i / S`` (reported as ``*_loss`` in
  ``info``, in the row's units); the reported bound is exact for the cap reduced by that.
- objective coefficients ``c`` are rounded to nearest at scale ``S_o = R_o / Σ|c|·ub``; the
  objective of any plan moves by at most ``δ = ½·Σ_i ub_i / S_o`` (``info["objective_scaling_error"]``);
  the reported bound is ``bound_int/S_o − δ`` (valid), the objective is re-evaluated in float.

Determinism: same problem, ``seed`` and ``workers`` → same plan when the search completes
(status optimal) or with ``workers=1``; with ``workers>1`` and a binding time limit the
incumbent may depend on thread timing (CP-SAT portfolio).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .model import build, decode, encode
from .problem import Problem, evaluate
from .result import Result, finish

R_ROW = 1e9  # resolution of scaled "≤" rows
#: Above this many variables presolve runs light (no probing, no symmetry, no inclusion search):
#: on multiple-choice knapsacks of 10⁴–10⁵ Booleans full presolve alone outlasts a 20 s limit
#: (probing adds ~10⁶ binary clauses) and the search never starts, not even from a feasible hint.
LIGHT_PRESOLVE_VARS = 20_000
INT_MAX = 2**62
PORTFOLIO = ("max_lp", "core", "default_lp", "quick_restart", "reduced_costs", "pseudo_costs", "no_lp", "lb_tree_search")


def scaled_rows(m, ub: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray, int, int]], dict]:
    """Integer rows ``(cols, coefs, lo, hi)`` of the linear model (scaling in the module docstring)
    and the worst-case slack ``*_loss`` each kind of "≤ cap" row can cost."""
    A = m.A.tocsr()
    cap_rows = np.array([k in ("budget", "layer_budget", "energy", "latency") for k in m.kind], bool)
    integral = A[~cap_rows] if cap_rows.any() else A
    if integral.nnz and not np.allclose(integral.data, np.rint(integral.data)):
        raise AssertionError("non-integral coefficients in an assignment/K/switch row")
    rows, loss = [], {}
    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r]:A.indptr[r + 1]]
        vals = A.data[A.indptr[r]:A.indptr[r + 1]]
        lo, hi = m.lo[r], m.hi[r]
        if cap_rows[r]:
            if hi <= 0:
                coef, rhs, lss = (vals > 0).astype(np.int64), 0, 0.0
            else:
                S = min(R_ROW, INT_MAX / max(1.0, ub[cols].sum()) / 2) / hi
                rhs = int(math.floor(hi * S))
                coef = np.minimum(np.ceil(vals * S), rhs + 1).astype(np.int64)
                lss = float(ub[cols].sum()) / S
            key = f"{m.kind[r]}_loss"
            loss[key] = max(loss.get(key, 0.0), lss)
            keep = coef != 0
            rows.append((cols[keep], coef[keep], -INT_MAX, rhs))
        else:
            rows.append((cols, np.rint(vals).astype(np.int64),
                         int(math.ceil(lo)) if math.isfinite(lo) else -INT_MAX,
                         int(math.floor(hi)) if math.isfinite(hi) else INT_MAX))
    return rows, loss


def hint_problem(p: Problem) -> Problem:
    """``p`` with budget and caps shrunk by twice the rounding slack a *plan* can meet in the
    scaled rows, so that a plan feasible for it is feasible in CP-SAT's integer model too (a
    hint CP-SAT can use rather than discard). Each unit of a variable loses < 1/S to ``ceil``, and a
    plan has at most Σ_g count_g tile counts + L level + V used + L switch units nonzero:
    slack < (Σ count + 2L + V)/S, relative to the cap (S = R/cap)."""
    m = build(p)
    units = float(p.count.sum()) + 2 * p.L + p.V
    rel = units / min(R_ROW, INT_MAX / max(1.0, m.n_sum_bound) / 2)

    def shrink(v: float) -> float:
        return v * (1 - 2 * rel) if math.isfinite(v) else v

    return p.replace(budget=shrink(p.budget), energy_cap=shrink(p.energy_cap), latency_cap=shrink(p.latency_cap))


def _ints(a) -> str:
    return ", ".join(map(str, np.asarray(a, np.int64).tolist()))


def proto_text(ub: np.ndarray, rows, obj: np.ndarray, hint: np.ndarray | None) -> str:
    """The model in CP-SAT's protobuf text format: parsing it in C++ is ~10× faster than
    building 10⁵ variables and rows through the Python expression API."""
    parts = [f"variables {{ domain: [0, {u}] }}" for u in np.asarray(ub, np.int64).tolist()]
    parts += [f"constraints {{ linear {{ vars: [{_ints(c)}] coeffs: [{_ints(k)}] domain: [{lo}, {hi}] }} }}"
              for c, k, lo, hi in rows]
    nz = np.flatnonzero(obj)
    parts.append(f"objective {{ vars: [{_ints(nz)}] coeffs: [{_ints(obj[nz])}] }}")
    if hint is not None:
        parts.append(f"solution_hint {{ vars: [{_ints(np.arange(len(hint)))}] values: [{_ints(np.rint(hint))}] }}")
    return "\n".join(parts)


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 2, seed: int = 0, hint=None,
          progress: bool = False) -> Result:
    """Exact solve; ``hint`` (an Assignment, e.g. the Lagrangian plan) seeds the search. If CP-SAT
    ends without an incumbent of its own (presolve of 10⁵+ variables can outlast a short time
    limit) and the hint is a feasible plan, the hint is returned as the incumbent
    (``info["incumbent"] = "hint"``, no bound; :func:`..solve_hinted` adds the Lagrangian one):
    it is the best plan known."""
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    p = problem
    m = build(p)
    if m.dead_domain:
        return finish(p, "cpsat", None, math.inf, t0, status="infeasible")
    ub = m.ub.astype(np.int64)
    rows, loss = scaled_rows(m, ub)
    info: dict = {"n_vars": m.n, "n_rows": len(rows), **loss}
    ref = float((np.abs(m.obj) * m.ub).sum())
    So = (1e12 / ref) if ref > 0 else 1.0
    delta = 0.5 * m.n_sum_bound / So if ref > 0 else 0.0
    info["objective_scaling_error"] = delta
    hv = encode(p, m, hint) if hint is not None else None
    mdl = cp_model.CpModel()
    mdl.Proto().merge_text_format(proto_text(ub, rows, np.rint(m.obj * So).astype(np.int64), hv))
    info["build_s"] = time.perf_counter() - t0
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, time_limit - (time.perf_counter() - t0))
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.random_seed = int(seed)
    solver.parameters.log_search_progress = bool(progress)
    # the LP relaxation carries this model (knapsack rows): keep LP-heavy workers in a small portfolio
    solver.parameters.linearization_level = 2
    if m.n > LIGHT_PRESOLVE_VARS:
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.symmetry_level = 0
        solver.parameters.presolve_inclusion_work_limit = 0
    if 2 <= workers <= len(PORTFOLIO):
        for s_ in PORTFOLIO[:workers]:
            solver.parameters.subsolvers.append(s_)
    st = solver.Solve(mdl)
    info["cp_status"] = solver.StatusName(st)
    if st == cp_model.INFEASIBLE:
        return finish(p, "cpsat", None, math.inf, t0, status="infeasible", **info)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if hint is not None and evaluate(p, hint).feasible:  # no bound of CP-SAT's own to report
            return finish(p, "cpsat", hint, -math.inf, t0, incumbent="hint", **info)
        return finish(p, "cpsat", None, -math.inf, t0, status="timeout", **info)
    bound = solver.BestObjectiveBound() / So - delta if ref > 0 else 0.0
    sol = np.asarray(solver.ResponseProto().solution, np.int64)
    a = decode(p, m, sol)
    r = finish(p, "cpsat", a, bound, t0, proven_optimal=(st == cp_model.OPTIMAL), **info)
    if st != cp_model.OPTIMAL and r.status == "optimal":
        r.status = "feasible" if r.gap > 1e-9 else "optimal"
    return r
