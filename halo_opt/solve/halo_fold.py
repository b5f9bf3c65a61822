"""HALO's own mechanism at fold granularity (Juneja et al., arXiv 2502.19662), no optimality proof.

As the paper's summary describes it: each weight tile (one fold of the weight-stationary array,
aligned with the DVFS granularity) takes the fastest codebook whose error stays under a
sensitivity threshold; tiles are grouped into frequency classes (the fastest level their codebook
allows); the folds of a layer are reordered so that one class runs back to back
(:func:`.problem.fold_order`); and only a few DVFS levels are kept. Where the summary is silent
(formulations/formulation.md, "HALO baseline" lists each choice):

- the sensitivity of tile g on codebook c is its predicted error ``e_gc`` (the cost table's, local
  or loss-aware); the threshold τ is one absolute value for all tiles; a tile with no codebook
  under τ takes its least-error one; the total error grows with τ, so the largest τ meeting the
  budget is found by bisection over the sorted error values (exact);
- "fastest" = least objective cost of one tile over the levels its codebook meets (latency
  objective: the fastest clock; energy: the cheapest V/f point);
- more classes than K (or more switches than ``max_switches``): repeatedly drop the class whose
  tiles move most cheaply to another kept level their codebook meets (codebooks never change,
  so the error stays within the budget); a class that cannot move is kept; if the limits still
  fail there is no plan;
- switch costs play no part in the choice (HALO reorders but does not price switches).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .fold import option_cost
from .problem import Assignment, Problem, evaluate, fold_order, layer_levels_used, refuse_layer_budgets
from .result import Result, finish


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None) -> Result:
    from ..errors import UserError

    t0 = time.perf_counter()
    p = problem
    if not p.fold:
        raise UserError('the halo_fold solver needs granularity = "fold" (a level per tile); use --solver halo_layer here')
    refuse_layer_budgets(p, "halo_fold")
    G, C, V = p.G, p.C, p.V
    cost = np.where(p.compat[None], option_cost(p).reshape(G, C, V), np.inf)  # [G, C, V]
    speed = cost.min(2)  # [G, C] cost of the codebook at its best level
    fast_lv = cost.argmin(2)  # [G, C] its frequency class
    runnable = np.isfinite(speed)
    if G and not runnable.any(1).all():
        return finish(p, "halo_fold", None, -math.inf, t0)
    gi = np.arange(G)
    least = np.where(runnable, p.err, np.inf).argmin(1) if G else np.zeros(0, int)

    def choose(tau: float) -> np.ndarray:
        ok = runnable & (p.err <= tau)
        z = np.where(ok, speed, np.inf)
        zmin = z.min(1, keepdims=True)
        tie = np.isfinite(z) & (z <= zmin + 1e-12 * np.abs(zmin))
        ch = np.where(tie, p.err, np.inf).argmin(1)  # fastest under τ, ties → lower error
        return np.where(ok.any(1), ch, least)

    def total(ch) -> float:
        return float((p.count * p.err[gi, ch]).sum())

    taus = np.unique(p.err[runnable]) if G else np.zeros(0)
    lo, hi = -1, len(taus) - 1  # largest index whose choice meets the budget (-1: least-error for all)
    if G and total(choose(taus[-1])) > p.budget:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if total(choose(taus[mid])) <= p.budget:
                lo = mid
            else:
                hi = mid
        hi = lo
    ch = choose(taus[hi]) if hi >= 0 else least
    lv = fast_lv[gi, ch] if G else np.zeros(0, int)
    tile_cost = cost[gi, ch] if G else np.zeros((0, V))  # [G, V] each tile's cost per level (its codebook fixed)

    def plan(lv):
        fc = np.zeros((G, C, V), np.int64)
        fc[gi, ch, lv] = p.count
        return Assignment.from_fold(p, fc)

    def over_limits(lv) -> bool:
        a = plan(lv)
        used = layer_levels_used(p, a.fold_counts)
        n_lv, n_sw = int(used.any(0).sum()), fold_order(used)[0]
        return (p.max_levels is not None and n_lv > p.max_levels) or (p.max_switches is not None and n_sw > p.max_switches)

    while G and over_limits(lv):
        kept = np.unique(lv)
        best = None
        for u in kept:
            others = kept[kept != u]
            at = np.flatnonzero(lv == u)
            if not len(others):
                continue
            sub = tile_cost[np.ix_(at, others)]
            if not np.isfinite(sub.min(1)).all():
                continue
            dc = float((p.count[at] * (sub.min(1) - tile_cost[at, u])).sum())
            if best is None or dc < best[0]:
                best = (dc, at, others[sub.argmin(1)])
        if best is None:
            return finish(p, "halo_fold", None, -math.inf, t0, status="unknown")
        lv = lv.copy()
        lv[best[1]] = best[2]
    a = plan(lv)
    return finish(p, "halo_fold", a, -math.inf, t0, threshold=float(taus[hi]) if hi >= 0 else None,
                  classes=int(len(np.unique(lv))), switches=evaluate(p, a).switches)
