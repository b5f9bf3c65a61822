"""Exact solve of the same model (:mod:`.model`) in float64 with HiGHS via scipy.optimize.milp.

HiGHS is deterministic for a given problem (single-threaded through scipy; ``workers`` and
``seed`` are accepted for a uniform interface). Its tolerances are absolute, so:

- every "≤ cap" row is divided by the evaluator's cap ``cap·(1+RTOL)`` (right-hand side 1):
  "infeasible" from HiGHS then means no plan passes :func:`.problem.evaluate`. A plan HiGHS
  returns is checked by ``evaluate``; one that exceeds a cap within HiGHS's feasibility
  tolerance sends a re-solve with the caps tightened by :data:`CAP_TIGHTEN` (bound kept);
- the objective is divided by its largest term, then — when the gap is not yet within
  :data:`.result.OPT_GAP` — re-solved near the incumbent ``f``: variables costing more than ``f``
  fixed to 0 (no better plan uses them) and the objective divided by ``f/1e3``, so that
  HiGHS's absolute gap (1e-6) and tolerances are small next to the optimum;
- the bound is HiGHS's dual bound less ``1e-7·Σ ub + 1e-9·|bound|`` (scaled units: its dual
  feasibility tolerance over every variable), so it stays valid.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from .model import build, decode
from .problem import RTOL, Problem, evaluate
from .result import OPT_GAP, Result, finish

CAP_TIGHTEN = 1e-5  # relative tightening of budget/cap rows after a plan failed evaluate()
CAP_KINDS = ("budget", "layer_budget", "energy", "latency")
MAX_ROUNDS = 4


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None,
          mip_rel_gap: float = 1e-7) -> Result:
    from scipy.optimize import Bounds, LinearConstraint, milp

    t0 = time.perf_counter()
    p = problem
    m = build(p)
    if m.dead_domain:
        return finish(p, "milp", None, math.inf, t0, status="infeasible")
    if m.n == 0:  # a fold problem without tiles: the empty plan, objective 0
        return finish(p, "milp", decode(p, m, np.zeros(0)), 0.0, t0)
    A0, lo0, hi0 = m.A.tocsr(), m.lo.copy(), m.hi.copy()
    caps = np.array([k in CAP_KINDS and h > 0 for k, h in zip(m.kind, hi0)], bool)
    d = np.where(caps, 1.0 / np.where(caps, hi0 * (1 + RTOL), 1.0), 1.0)
    A = (sp.diags(d) @ A0).tocsr()
    lo, hi = lo0 * d, np.where(caps, 1.0, hi0 * d)
    ub = m.ub.copy()
    info: dict = {"n_vars": m.n, "n_rows": m.A.shape[0], "rounds": 0}
    best, best_obj, bound, tightened = None, math.inf, -math.inf, False
    for rnd in range(MAX_ROUNDS):
        left = time_limit - (time.perf_counter() - t0)
        if rnd and left <= 0.01:
            break
        info["rounds"] = rnd + 1
        so = best_obj / 1e3 if best is not None and best_obj > 0 else (float((m.obj * ub).max()) if ub.any() else 1.0) or 1.0
        res = milp(m.obj / so, integrality=np.ones(m.n), bounds=Bounds(np.zeros(m.n), ub),
                   constraints=[LinearConstraint(A, lo, np.where(caps, 1.0 - CAP_TIGHTEN, hi) if tightened else hi)],
                   options={"time_limit": max(0.01, left), "mip_rel_gap": mip_rel_gap, "disp": False})
        info |= {"highs_status": int(res.status), "message": res.message}
        if res.status == 2:
            if tightened:
                break
            if best is None:  # HiGHS's tolerances only widen the caps: proven
                return finish(p, "milp", None, math.inf, t0, status="infeasible", **info)
            bound = max(bound, best_obj)  # no plan cheaper than the incumbent
            break
        db = getattr(res, "mip_dual_bound", None)
        if not tightened and db is not None and np.isfinite(db):
            b = (float(db) - 1e-7 * float(ub.sum()) - 1e-9 * abs(float(db))) * so
            bound = max(bound, min(max(b, 0.0), best_obj))
        if res.x is None:
            break
        a = decode(p, m, res.x)
        ev = evaluate(p, a)
        if ev.feasible and ev.objective < best_obj:
            best, best_obj = a, ev.objective
        if not ev.feasible:
            if tightened:
                break
            tightened = info["tightened"] = True
            continue
        if best_obj - bound <= OPT_GAP * best_obj or res.status != 0 or tightened:
            break
        ub = np.where(m.obj > best_obj, 0.0, ub)
    return finish(p, "milp", best, bound, t0, **info)
