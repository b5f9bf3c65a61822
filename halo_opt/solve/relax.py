"""LP relaxation (cvxpy, HiGHS) of the model of :mod:`.model`: a lower bound, then a plan.

Bound: the LP optimum minus 1e-7 relative (solver tolerance); none if the LP hit its time limit. Rounding: each domain takes
the level with the largest LP weight ``y[l,v]`` — chosen jointly by the exact level DP
(maximise Σ y under K / switch limits) — then codebooks are re-filled for those levels
(:func:`.fill.fill`); if they cannot meet the budget, domains are moved to lower-error
levels greedily first (:func:`.greedy.repair_levels`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .fill import fill
from .greedy import base_level_cost, repair_levels
from .infeasible import _per_level_min
from .levels import best_levels
from .model import build
from .problem import Problem, refuse_layer_budgets
from .result import Result, finish


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None) -> Result:
    import cvxpy as cp

    t0 = time.perf_counter()
    p = problem
    refuse_layer_budgets(p, "relax")
    m = build(p)
    if m.dead_domain:
        return finish(p, "relax", None, math.inf, t0, status="infeasible")
    x = cp.Variable(m.n)
    eq = m.lo == m.hi
    cons = [x >= 0, x <= m.ub]
    if eq.any():
        cons.append(m.A[eq] @ x == m.lo[eq])
    up = ~eq & np.isfinite(m.hi)
    if up.any():
        cons.append(m.A[up] @ x <= m.hi[up])
    dn = ~eq & np.isfinite(m.lo)
    if dn.any():
        cons.append(m.A[dn] @ x >= m.lo[dn])
    prob = cp.Problem(cp.Minimize(m.obj @ x), cons)
    try:
        prob.solve(solver=cp.HIGHS, time_limit=float(max(1.0, time_limit)))
    except cp.error.SolverError:
        prob.solve(solver=cp.CLARABEL)
    if prob.status in ("infeasible", "infeasible_inaccurate"):
        return finish(p, "relax", None, math.inf, t0, status="infeasible")
    if x.value is None:
        return finish(p, "relax", None, -math.inf, t0, status="timeout")
    # only a solved LP gives a valid bound (a time-limited simplex value does not)
    bound = float(prob.value) - 1e-7 * abs(float(prob.value)) if prob.status == "optimal" else -math.inf
    yv = np.where(m.y_idx >= 0, x.value[np.maximum(m.y_idx, 0)], -np.inf)
    _, lv = best_levels(-np.where(np.isfinite(yv), yv, -np.inf) * 1.0, 0.0, p.max_levels, p.max_switches)
    a = fill(p, lv) if lv is not None else None
    if a is None and lv is not None:  # rounded levels cannot meet the budget: greedy level repair
        lv, _ = repair_levels(p, lv, base_level_cost(p), _per_level_min(p, p.err))
        a = fill(p, lv)
    return finish(p, "relax", a, bound, t0, lp_status=prob.status)
