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
from .problem import Problem
from .result import Result, finish

R_ROW = 1e9  # resolution of scaled "≤" rows
INT_MAX = 2**62
PORTFOLIO = ("max_lp", "core", "default_lp", "quick_restart", "reduced_costs", "pseudo_costs", "no_lp", "lb_tree_search")


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 2, seed: int = 0, hint=None,
          progress: bool = False) -> Result:
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    p = problem
    m = build(p)
    if m.dead_domain:
        return finish(p, "cpsat", None, math.inf, t0, status="infeasible")
    mdl = cp_model.CpModel()
    ub = m.ub.astype(np.int64)
    x = [mdl.NewIntVar(0, int(u), f"x{i}") for i, u in enumerate(ub)]
    A = m.A.tocsr()
    info: dict = {"n_vars": m.n, "n_rows": A.shape[0]}
    for r in range(A.shape[0]):
        cols = A.indices[A.indptr[r]:A.indptr[r + 1]]
        vals = A.data[A.indptr[r]:A.indptr[r + 1]]
        lo, hi, kind = m.lo[r], m.hi[r], m.kind[r]
        if kind in ("budget", "layer_budget", "energy", "latency"):
            if hi <= 0:
                coef, rhs = (vals > 0).astype(np.int64), 0
                loss = 0.0
            else:
                S = min(R_ROW, INT_MAX / max(1.0, ub[cols].sum()) / 2) / hi
                rhs = int(math.floor(hi * S))
                coef = np.minimum(np.ceil(vals * S), rhs + 1).astype(np.int64)
                loss = float(ub[cols].sum()) / S
            info[f"{kind}_loss"] = max(info.get(f"{kind}_loss", 0.0), loss)
            mdl.Add(sum(int(c) * x[j] for c, j in zip(coef, cols) if c) <= rhs)
        else:  # integral rows: assignment, K, switches
            coef = np.rint(vals).astype(np.int64)
            assert np.allclose(coef, vals)
            expr = sum(int(c) * x[j] for c, j in zip(coef, cols))
            if lo == hi:
                mdl.Add(expr == int(lo))
            else:
                if math.isfinite(lo):
                    mdl.Add(expr >= int(math.ceil(lo)))
                if math.isfinite(hi):
                    mdl.Add(expr <= int(math.floor(hi)))
    ref = float((np.abs(m.obj) * m.ub).sum())
    So = (1e12 / ref) if ref > 0 else 1.0
    oc = np.rint(m.obj * So).astype(np.int64)
    delta = 0.5 * m.n_sum_bound / So if ref > 0 else 0.0
    info["objective_scaling_error"] = delta
    mdl.Minimize(sum(int(c) * x[j] for j, c in enumerate(oc) if c))
    if hint is not None:
        hv = encode(p, m, hint)
        for j, v in enumerate(hv):
            mdl.AddHint(x[j], int(round(v)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, time_limit - (time.perf_counter() - t0))
    solver.parameters.num_workers = max(1, int(workers))
    solver.parameters.random_seed = int(seed)
    solver.parameters.log_search_progress = bool(progress)
    # the LP relaxation carries this model (knapsack rows): keep LP-heavy workers in a small portfolio
    solver.parameters.linearization_level = 2
    if 2 <= workers <= len(PORTFOLIO):
        for s_ in PORTFOLIO[:workers]:
            solver.parameters.subsolvers.append(s_)
    st = solver.Solve(mdl)
    info["cp_status"] = solver.StatusName(st)
    if st == cp_model.INFEASIBLE:
        return finish(p, "cpsat", None, math.inf, t0, status="infeasible", **info)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return finish(p, "cpsat", None, -math.inf, t0, status="timeout", **info)
    sol = np.array([solver.Value(v) for v in x])
    bound = solver.BestObjectiveBound() / So - delta if ref > 0 else 0.0
    a = decode(p, m, sol)
    r = finish(p, "cpsat", a, bound, t0, proven_optimal=(st == cp_model.OPTIMAL), **info)
    if st != cp_model.OPTIMAL and r.status == "optimal":
        r.status = "feasible" if r.gap > 1e-9 else "optimal"
    return r
