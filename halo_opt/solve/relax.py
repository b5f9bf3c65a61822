"""LP relaxation (HiGHS through scipy.optimize.linprog) of the model of :mod:`.model`: a
lower bound, then a plan.

Bound: not the LP value as reported (HiGHS's tolerances are absolute) but the Lagrangian bound
of the LP's duals, computed in float64: for row duals ``μ`` (``μ ≤ 0`` on "≤" rows) the bound
``μᵀb + Σ_i ub_i·min(0, c_i − (Aᵀμ)_i)`` holds for every ``x`` in the box that meets the rows,
whatever the duals' accuracy (less :data:`FLOAT_SLACK` times the magnitude of its terms, for
float64 rounding). Cap rows use the evaluator's cap ``cap·(1+RTOL)``. When the gap
exceeds :data:`.result.OPT_GAP`, the LP is solved again near the plan's objective ``f``
(variables costing more than ``f`` fixed to 0, objective divided by ``f``) and the larger
bound kept. Rounding: each domain takes the level with the largest LP weight ``y[l,v]`` —
chosen jointly by the exact level DP (maximise Σ y under K / switch limits) — then codebooks
are re-filled for those levels (:func:`.fill.fill`); if they cannot meet the budget, domains
are moved to lower-error levels greedily first (:func:`.greedy.repair_levels`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from .fill import fill
from .greedy import base_level_cost, repair_levels
from .infeasible import _per_level_min
from .levels import best_levels
from .model import build
from .problem import RTOL, Problem, evaluate, refuse_fold, refuse_layer_budgets
from .result import OPT_GAP, Result, finish

CAP_KINDS = ("budget", "layer_budget", "energy", "latency")
FLOAT_SLACK = 1e-13  # relative float64 rounding allowance on the dual bound's sums


def _lp(m, ub, A, lo, hi, so: float, time_limit: float):
    """Solve the scaled LP; return (status, x, valid bound in objective units or -inf)."""
    from scipy.optimize import linprog

    eq = lo == hi
    up = ~eq & np.isfinite(hi)
    dn = ~eq & np.isfinite(lo)
    A_ub = sp.vstack([A[up], -A[dn]]).tocsr()
    b_ub = np.concatenate([hi[up], -lo[dn]])
    c = m.obj / so
    res = linprog(c, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if A_ub.shape[0] else None,
                  A_eq=A[eq] if eq.any() else None, b_eq=lo[eq] if eq.any() else None,
                  bounds=np.column_stack([np.zeros(m.n), ub]), method="highs",
                  options={"time_limit": float(max(0.1, time_limit))})
    if res.status == 2:
        return "infeasible", None, math.inf
    if res.x is None:
        return "timeout", None, -math.inf
    mu_ub = np.minimum(np.nan_to_num(res.ineqlin.marginals), 0.0) if A_ub.shape[0] else np.zeros(0)
    mu_eq = np.nan_to_num(res.eqlin.marginals) if eq.any() else np.zeros(0)
    red, val = c.copy(), 0.0
    mag_red, mag_val = np.abs(c), 0.0  # magnitudes of the summed terms: float64 rounding ≤ FLOAT_SLACK·magnitude
    for M, mu, b in ((A_ub, mu_ub, b_ub), (A[eq], mu_eq, lo[eq])):
        if M.shape[0]:
            red -= M.T @ mu
            mag_red += abs(M).T @ np.abs(mu)
            val += float(mu @ b)
            mag_val += float(np.abs(mu) @ np.abs(b))
    val += float((np.minimum(red, 0.0) * ub).sum())
    val -= FLOAT_SLACK * (mag_val + float((mag_red * ub).sum()))
    return ("optimal" if res.status == 0 else "stopped"), res.x, val * so


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None) -> Result:
    t0 = time.perf_counter()
    p = problem
    refuse_fold(p, "relax")
    refuse_layer_budgets(p, "relax")
    m = build(p)
    if m.dead_domain:
        return finish(p, "relax", None, math.inf, t0, status="infeasible")
    caps = np.array([k in CAP_KINDS and h > 0 for k, h in zip(m.kind, m.hi)], bool)
    d = np.where(caps, 1.0 / np.where(caps, m.hi * (1 + RTOL), 1.0), 1.0)
    A = (sp.diags(d) @ m.A).tocsr()
    lo, hi = m.lo * d, np.where(caps, 1.0, m.hi * d)
    ub = m.ub.astype(float)
    so = float((m.obj * ub).max()) or 1.0
    st, x, bound = _lp(m, ub, A, lo, hi, so, time_limit)
    if st == "infeasible":
        return finish(p, "relax", None, math.inf, t0, status="infeasible")
    if x is None:
        return finish(p, "relax", None, -math.inf, t0, status="timeout")
    yv = np.where(m.y_idx >= 0, x[np.maximum(m.y_idx, 0)], -np.inf)
    _, lv = best_levels(-np.where(np.isfinite(yv), yv, -np.inf) * 1.0, 0.0, p.max_levels, p.max_switches)
    a = fill(p, lv) if lv is not None else None
    if a is None and lv is not None:  # rounded levels cannot meet the budget: greedy level repair
        lv, _ = repair_levels(p, lv, base_level_cost(p), _per_level_min(p, p.err))
        a = fill(p, lv)
    ev = evaluate(p, a) if a is not None else None
    if ev is not None and ev.feasible and ev.objective - bound > OPT_GAP * ev.objective and ev.objective > 0:
        ub2 = np.where(m.obj > ev.objective, 0.0, ub)  # near the plan: no cheaper plan uses these
        st2, _, b2 = _lp(m, ub2, A, lo, hi, ev.objective, time_limit - (time.perf_counter() - t0))
        bound = max(bound, ev.objective if st2 == "infeasible" else min(b2, ev.objective))
    return finish(p, "relax", a, bound, t0, lp_status=st)
