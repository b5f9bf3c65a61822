"""Exact solve with OR-Tools CP-SAT on the integer-scaled model of :mod:`.model`.

CP-SAT needs integers; every claim it makes is kept true for the float problem:

- "≤ cap" rows (error budget, per-layer budgets, energy and latency caps) use the evaluator's
  cap ``b' = cap·(1+RTOL)`` (:func:`.problem.cap_tol`) scaled by ``S = min(2⁶⁰/Σ_row ub, 2⁵³)/b'``.
  The *outer* model rounds coefficients down (``Σ floor(a·S)·x ≤ floor(b'·S)``): a relaxation of
  the float problem, so its "infeasible" and its bound hold for every plan :func:`.problem.evaluate`
  accepts. Its plans can exceed ``b'`` by at most ``Σ_row ub / S`` (``*_band`` in ``info``,
  ~1e-10 relative for 10⁴ tiles); every plan is checked by ``evaluate``, and one that fails
  sends the search to the *inner* model (coefficients rounded up, cap ``cap·(1+RTOL/2)``:
  every plan of it passes) with the outer bound kept.
- objective coefficients ``c ≥ 0`` are rounded to nearest at scale ``S_o = 2⁵³ / Σ c·ub``; a
  plan's objective moves by at most ``δ = ½·units/S_o`` (``units`` = the most variable units a
  plan sets: Σ count + 2L + V), so the bound is ``bound_int/S_o − δ``. When ``δ`` keeps the gap
  above :data:`.result.OPT_GAP` (costs spanning many orders of magnitude) the search repeats
  near the incumbent ``f``: variables with ``c > f`` are fixed to 0 (no better plan uses them)
  and the objective is rescaled over the rest, until the gap closes, nothing changes, or the
  time is spent. ``info["objective_scaling_error"]`` is the last ``δ``.

Determinism: with ``workers=1`` (the default of every caller) CP-SAT searches on one thread
under a *deterministic* time limit of ``time_limit`` units (≈ seconds of one unloaded core),
with a wall-clock safety stop at 4×: same problem, hint and ``seed`` → same plan unless that
wall stop fires (``info["wall_stop"]``). ``workers > 1`` runs CP-SAT's parallel portfolio
(LP-heavy workers first): often faster, not deterministic. (CP-SAT's deterministic parallel
mode, ``interleave_search``, was 15–35× slower on the synthetic ``tiny`` energy model.)
"""

from __future__ import annotations

import math
import time

import numpy as np

from .model import build, decode, encode
from .problem import RTOL, Problem, evaluate
from .result import OPT_GAP, Result, finish

ROW_RES = 2.0**60  # (rhs + 1)·Σ ub of a scaled cap row stays below 2⁶¹ (CP-SAT checks int64 overflow)
OBJ_RES = 2.0**53
#: Above this many variables presolve runs light (no probing, no symmetry, no inclusion search):
#: on multiple-choice knapsacks of 10⁴–10⁵ Booleans full presolve alone outlasts a 20 s limit
#: (probing adds ~10⁶ binary clauses) and the search never starts, not even from a feasible hint.
LIGHT_PRESOLVE_VARS = 20_000
INT_MAX = 2**62
CAP_KINDS = ("budget", "layer_budget", "energy", "latency")
WALL_FACTOR = 4.0
MAX_ROUNDS = 4
PORTFOLIO = ("max_lp", "core", "default_lp", "quick_restart", "reduced_costs", "pseudo_costs", "no_lp", "lb_tree_search")


def scaled_rows(m, ub: np.ndarray, mode: str = "outer") -> tuple[list[tuple[np.ndarray, np.ndarray, int, int]], dict]:
    """Integer rows ``(cols, coefs, lo, hi)`` of the linear model: ``mode`` "outer" (relaxation)
    or "inner" (restriction), see the module docstring; and each cap kind's ``*_band``."""
    A = m.A.tocsr()
    cap_rows = np.array([k in CAP_KINDS for k in m.kind], bool)
    integral = A[~cap_rows] if cap_rows.any() else A
    if integral.nnz and not np.allclose(integral.data, np.rint(integral.data)):
        raise AssertionError("non-integral coefficients in an assignment/K/switch row")
    rows, band = [], {}
    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r]:A.indptr[r + 1]]
        vals = A.data[A.indptr[r]:A.indptr[r + 1]]
        lo, hi = m.lo[r], m.hi[r]
        if cap_rows[r]:
            if hi <= 0:
                coef, rhs, b = (vals > 0).astype(np.int64), 0, 0.0
            else:
                cap = hi * (1 + (RTOL if mode == "outer" else RTOL / 2))
                n_ub = max(1.0, float(ub[cols].sum()))
                S = min(ROW_RES / n_ub, 2.0**53) / cap  # rhs ≤ 2⁵³: exact in float64
                rhs = int(math.floor(cap * S))
                coef = np.floor(vals * S) if mode == "outer" else np.ceil(vals * S)
                coef = np.minimum(np.minimum(coef, 2.0 * rhs + 2).astype(np.int64), rhs + 1)
                b = n_ub / S
            key = f"{m.kind[r]}_band"
            band[key] = max(band.get(key, 0.0), b)
            keep = coef != 0
            rows.append((cols[keep], coef[keep], -INT_MAX, rhs))
        else:
            rows.append((cols, np.rint(vals).astype(np.int64),
                         int(math.ceil(lo)) if math.isfinite(lo) else -INT_MAX,
                         int(math.floor(hi)) if math.isfinite(hi) else INT_MAX))
    return rows, band


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


def _params(solver, n_vars: int, time_limit: float, workers: int, seed: int, progress: bool) -> None:
    prm = solver.parameters
    prm.max_deterministic_time = max(0.01, time_limit)
    prm.max_time_in_seconds = max(0.05, WALL_FACTOR * time_limit)
    prm.num_workers = max(1, int(workers))
    if 2 <= workers <= len(PORTFOLIO):  # parallel portfolio: faster, not deterministic
        prm.subsolvers.extend(PORTFOLIO[:workers])
    prm.random_seed = int(seed)
    prm.log_search_progress = bool(progress)
    prm.linearization_level = 2  # the LP relaxation carries this model (knapsack rows)
    prm.absolute_gap_limit = 0.0
    if n_vars > LIGHT_PRESOLVE_VARS:
        prm.cp_model_probing_level = 0
        prm.symmetry_level = 0
        prm.presolve_inclusion_work_limit = 0


def _run(solver, mdl):
    """(status, response) of one CP-SAT solve (a seam for tests)."""
    st = solver.Solve(mdl)
    return st, solver.ResponseProto()


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None,
          progress: bool = False) -> Result:
    """Exact solve; ``hint`` (an Assignment, e.g. the Lagrangian plan) seeds the search. If CP-SAT
    ends without a plan of its own and the hint passes :func:`evaluate`, the hint is returned
    (``info["incumbent"] = "hint"``) with CP-SAT's bound if it has one."""
    from ortools.sat import cp_model_pb2
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    p = problem
    m = build(p)
    if m.dead_domain:
        return finish(p, "cpsat", None, math.inf, t0, status="infeasible")
    if m.n == 0:  # a fold problem without tiles: the empty plan, objective 0
        return finish(p, "cpsat", decode(p, m, np.zeros(0)), 0.0, t0)
    ub = m.ub.astype(np.int64)
    units = m.units
    info: dict = {"n_vars": m.n, "n_rows": m.A.shape[0], "rounds": 0}
    best, best_obj, bound, mode = None, math.inf, -math.inf, "outer"
    if hint is not None and evaluate(p, hint).feasible:
        best, best_obj = hint, evaluate(p, hint).objective
        info["incumbent"] = "hint"
    hv = encode(p, m, hint) if hint is not None else None
    det_left = time_limit
    wall_end = t0 + WALL_FACTOR * time_limit
    for rnd in range(MAX_ROUNDS):
        if rnd and (det_left <= 0.01 or time.perf_counter() >= wall_end):
            break
        info["rounds"] = rnd + 1
        rows, band = scaled_rows(m, ub, mode)
        info.update(band)
        ref = float((m.obj * ub).sum())
        So = OBJ_RES / ref if ref > 0 else 1.0
        delta = 0.5 * units / So if ref > 0 else 0.0
        info["objective_scaling_error"] = delta
        mdl = cp_model.CpModel()
        oc = np.where(ub > 0, np.rint(np.where(ub > 0, m.obj, 0.0) * So), 0).astype(np.int64)
        mdl.Proto().merge_text_format(proto_text(ub, rows, oc, hv))
        solver = cp_model.CpSolver()
        _params(solver, m.n, det_left, workers, seed, progress)
        st, resp = _run(solver, mdl)
        det_left -= resp.deterministic_time
        info["cp_status"] = cp_model_pb2.CpSolverStatus.Name(int(st))
        info["wall_stop"] = time.perf_counter() >= wall_end and st not in (cp_model.OPTIMAL, cp_model.INFEASIBLE)
        if st == cp_model.INFEASIBLE:
            if mode == "outer" and best is None:  # a relaxation of the float problem: proven
                return finish(p, "cpsat", None, math.inf, t0, status="infeasible", **info)
            if mode == "outer":  # every plan better than the incumbent is excluded (numerics): it is optimal
                bound = max(bound, best_obj)
            break
        if mode == "outer" and math.isfinite(resp.best_objective_bound):
            b = max(0.0, resp.best_objective_bound / So - delta)
            bound = max(bound, min(b, best_obj))  # after pruning: plans not in the model cost ≥ best_obj
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if st == cp_model.UNKNOWN:
                info["status"] = "timeout"  # (used only when there is no plan)
            break
        a = decode(p, m, np.asarray(resp.solution, np.int64))
        ev = evaluate(p, a)
        if ev.feasible and ev.objective <= best_obj:  # CP-SAT's own plan wins ties with the hint
            best, best_obj = a, ev.objective
            info.pop("incumbent", None)
        if not ev.feasible:
            if mode == "inner":
                break
            mode, info["model"] = "inner", "inner"  # the outer plan sits in the rounding band
            hv = encode(p, m, best) if best is not None else hv
            continue
        if best_obj - bound <= OPT_GAP * best_obj or st != cp_model.OPTIMAL or mode == "inner":
            break
        # objective rounding limits the gap: fix variables that cost more than the incumbent, rescale
        new_ub = np.where(m.obj > best_obj, 0, ub)
        if ref > 0 and delta <= 0.1 * OPT_GAP * best_obj and np.array_equal(new_ub, ub):
            break
        ub, hv = new_ub, encode(p, m, best)
    return finish(p, "cpsat", best, bound, t0, **info)
