"""``halo_layer`` (alias ``halo``): a layer-granularity HALO-style heuristic, no optimality proof.
Not HALO's own mechanism (a level per fold, tile reordering: :mod:`.halo_fold`); whole layers move
between the full grid and one fast codebook (after Juneja et al., arXiv 2502.19662).

- the *fast* codebook: the one whose cheapest compatible level gives the lowest objective
  when every tile uses it (ties: lower mean error); the *full* codebook: ``full`` if present,
  else the least mean error;
- layers sorted by sensitivity (error added by moving the whole layer from full to fast);
  the most sensitive layers keep full until the budget holds, the rest take fast;
- every domain runs at the cheapest level all its codebooks allow;
- levels merged to K: repeatedly drop the used level whose domains move most cheaply to
  another used level they can run at.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .greedy import base_level_cost
from .problem import Assignment, Problem, refuse_fold, refuse_layer_budgets
from .result import Result, finish


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None) -> Result:
    t0 = time.perf_counter()
    p = problem
    refuse_fold(p, "halo_layer", "halo_fold (or cpsat, milp, lagrange, greedy)")
    refuse_layer_budgets(p, "halo_layer")
    D0 = base_level_cost(p)
    lc = np.where(np.isfinite(D0), D0, np.inf).sum(0)  # [V] whole-model cost per level
    cb_cost = np.array([lc[p.compat[c]].min() if p.compat[c].any() else np.inf for c in range(p.C)])
    mean_err = (p.count[:, None] * p.err).sum(0)
    fast = int(np.lexsort((mean_err, cb_cost))[0])
    full = p.codebook_names.index("full") if "full" in p.codebook_names else int(mean_err.argmin())
    if not np.isfinite(cb_cost[fast]) or not p.compat[full].any():
        return finish(p, "halo_layer", None, -math.inf, t0)
    nl = int(p.group_layer.max(initial=0)) + 1
    sens = np.bincount(p.group_layer, weights=p.count * (p.err[:, fast] - p.err[:, full]), minlength=nl)
    total = float((p.count * p.err[:, fast]).sum())
    keep_full = np.zeros(nl, bool)
    for li in np.argsort(-sens, kind="stable"):
        if total <= p.budget or sens[li] <= 0:
            break
        keep_full[li] = True
        total -= sens[li]
    choice = np.where(keep_full[p.group_layer], full, fast)
    used = np.zeros((p.L, p.C), bool)
    used[p.group_domain, choice] = True
    ok = ~(used[:, :, None] & ~p.compat[None]).any(1)  # [L, V] level runs every codebook used
    cost = np.where(ok, D0, np.inf)
    lv = cost.argmin(1)
    if not np.isfinite(cost[np.arange(p.L), lv]).all():
        return finish(p, "halo_layer", None, -math.inf, t0, status="unknown")
    K = p.max_levels
    while K is not None and len(np.unique(lv)) > K:
        best = None
        levels = np.unique(lv)
        for u in levels:
            others = levels[levels != u]
            dom = np.flatnonzero(lv == u)
            sub = cost[np.ix_(dom, others)]
            if not np.isfinite(sub.min(1)).all():
                continue
            dc = float((sub.min(1) - cost[dom, u]).sum())
            if best is None or dc < best[0]:
                best = (dc, dom, others[sub.argmin(1)])
        if best is None:
            return finish(p, "halo_layer", None, -math.inf, t0, status="unknown")
        lv[best[1]] = best[2]
    return finish(p, "halo_layer", Assignment.from_choice(p, choice, lv), -math.inf, t0, layers_full=int(keep_full.sum()))
