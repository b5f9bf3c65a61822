"""Exact solve of the same model (:mod:`.model`) in float64 with HiGHS via scipy.optimize.milp.

HiGHS is deterministic for a given problem (single-threaded through scipy; ``workers`` and
``seed`` are accepted for a uniform interface). ``mip_rel_gap`` defaults to 1e-7.
Budget/cap rows are normalised to right-hand side 1 and tightened by 1e-7 relative (HiGHS's
feasibility tolerance), so a HiGHS plan is feasible in float64; the bound (HiGHS's dual bound
minus 1e-9 relative) is exact for the caps reduced by that 1e-7.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from .model import build, decode
from .problem import Problem
from .result import Result, finish

CAP_TIGHTEN = 1e-7  # relative tightening of budget/cap rows (HiGHS feasibility tolerance is ~1e-7)


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None,
          mip_rel_gap: float = 1e-7) -> Result:
    from scipy.optimize import Bounds, LinearConstraint, milp

    t0 = time.perf_counter()
    p = problem
    m = build(p)
    if m.dead_domain:
        return finish(p, "milp", None, math.inf, t0, status="infeasible")
    # HiGHS tolerances are absolute: bring the objective to O(1) and every "≤ cap" row to rhs 1,
    # made conservative by CAP_TIGHTEN so a HiGHS-feasible plan is feasible in float64.
    so = float((np.abs(m.obj) * m.ub).max()) or 1.0
    A, lo, hi = m.A.tocsr(copy=True), m.lo.copy(), m.hi.copy()
    caps = np.array([k in ("budget", "layer_budget", "energy", "latency") and h > 0 for k, h in zip(m.kind, hi)])
    d = np.where(caps, 1.0 / np.where(caps, hi, 1.0), 1.0)
    A = (sp.diags(d) @ A).tocsr()
    hi = np.where(caps, 1.0 - CAP_TIGHTEN, hi * d)
    res = milp(m.obj / so, integrality=np.ones(m.n), bounds=Bounds(np.zeros(m.n), m.ub),
               constraints=[LinearConstraint(A, lo * d, hi)],
               options={"time_limit": max(0.01, time_limit - (time.perf_counter() - t0)),
                        "mip_rel_gap": mip_rel_gap, "disp": False})
    info = {"n_vars": m.n, "n_rows": m.A.shape[0], "highs_status": int(res.status), "message": res.message}
    if res.status == 2:
        return finish(p, "milp", None, math.inf, t0, status="infeasible", **info)
    if res.x is None:
        return finish(p, "milp", None, -math.inf, t0, status="timeout", **info)
    db = getattr(res, "mip_dual_bound", None)
    bound = float(db) * so if db is not None and np.isfinite(db) else -math.inf
    bound -= 1e-9 * abs(bound)
    info["cap_loss_rel"] = CAP_TIGHTEN
    a = decode(p, m, res.x)
    r = finish(p, "milp", a, bound, t0, proven_optimal=False, **info)
    if r.has_plan:
        r.status = "optimal" if res.status == 0 and r.gap <= max(mip_rel_gap, 1e-9) * 1.01 else "feasible"
    return r
