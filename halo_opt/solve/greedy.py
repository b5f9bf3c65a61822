"""Sensitivity-ordered greedy (HAWQ-style), no optimality proof.

1. Levels: every domain starts at its cheapest level ignoring the error budget (exact DP under
   K / switch limits on ``D0[l,v]`` = level cost + cheapest compatible codebook per tile).
2. While even the least-error codebooks at those levels exceed the budget, move the domain
   whose move to another level buys the most error reduction per unit of added cost
   ``ΔD0 / Δminerr`` (respecting K and the switch limit).
3. Spend what budget is left (:func:`improve_levels`): move domains to cheaper levels, most
   cost saved per error added first, while the least-error codebooks still fit.
4. Codebooks: start every tile on its cheapest codebook and move tiles by best
   Δcost/Δerror until the budget holds (:func:`.fill.fill`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .fill import fill
from .infeasible import _per_level_min
from .levels import best_levels
from .problem import Problem, refuse_layer_budgets
from .result import Result, finish


def base_level_cost(p: Problem) -> np.ndarray:
    """[L, V] D0: level-dependent objective + cheapest compatible codebook per tile (inf if none)."""
    lat_part = p.lat * (p.w_latency + p.w_energy * p.leak_w)[None, :]
    dyn = _per_level_min(p, p.w_energy * p.energy_dyn) * p.sigma[None, :] if p.w_energy else \
        np.where(np.isfinite(_per_level_min(p, p.err)), 0.0, np.inf)
    return dyn + lat_part


def _ok(p: Problem, lv: np.ndarray) -> bool:
    if p.max_levels is not None and len(np.unique(lv)) > p.max_levels:
        return False
    return p.max_switches is None or int((lv[1:] != lv[:-1]).sum()) <= p.max_switches


def repair_levels(p: Problem, lv: np.ndarray, D0: np.ndarray, minerr: np.ndarray,
                  deadline: float = np.inf) -> tuple[np.ndarray, int]:
    """Move domains to other levels, best error reduction per added cost first, until the
    least-error codebooks fit the budget (or no move helps); K and switch limits respected."""
    L = np.arange(p.L)
    lv = np.asarray(lv).copy()
    steps = 0
    while minerr[L, lv].sum() > p.budget and time.perf_counter() < deadline:
        d_err = minerr[L, lv][:, None] - minerr  # [L, V] error reduction of moving l to v
        d_cost = D0 - D0[L, lv][:, None]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ratio = np.where((d_err > 0) & np.isfinite(D0), d_err / np.maximum(d_cost, 1e-300), -np.inf)
        ratio = np.where((d_cost <= 0) & np.isfinite(D0), np.where(d_err > 0, np.inf, -np.inf), ratio)
        moved = False
        for k in np.argsort(-ratio, axis=None, kind="stable"):
            l, v = divmod(int(k), p.V)
            if not ratio[l, v] > -np.inf:
                break
            trial = lv.copy()
            trial[l] = v
            if _ok(p, trial):
                lv, moved = trial, True
                break
        if not moved:  # single moves break K or the switch limit: move every domain of a level at once
            lv, moved = _group_move(p, lv, D0, minerr)
        steps += 1
        if not moved:
            break
    return lv, steps


def _group_move(p: Problem, lv: np.ndarray, D0: np.ndarray, minerr: np.ndarray) -> tuple[np.ndarray, bool]:
    """Relabel all domains at level u to level v (keeps the number of levels used ≤ K and the
    switch pattern); pick the (u, v) with the best error reduction per added cost."""
    L = np.arange(p.L)
    best, best_ratio = None, -np.inf
    for u in np.unique(lv):
        at = lv == u
        for v in range(p.V):
            if v == u or not np.isfinite(D0[at, v]).all():
                continue
            d_err = float((minerr[L[at], u] - minerr[L[at], v]).sum())
            d_cost = float((D0[L[at], v] - D0[L[at], u]).sum())
            if d_err <= 0:
                continue
            ratio = np.inf if d_cost <= 0 else d_err / d_cost
            trial = np.where(at, v, lv)
            if ratio > best_ratio and _ok(p, trial):
                best, best_ratio = trial, ratio
    return (best, True) if best is not None else (lv, False)


def improve_levels(p: Problem, lv: np.ndarray, D0: np.ndarray, minerr: np.ndarray,
                   deadline: float = np.inf) -> np.ndarray:
    """Spend the budget the least-error codebooks leave: repeatedly apply the move — one domain
    to another level, or all domains of level u relabelled to v (the only moves when K binds) —
    with the largest cost saving ``ΔD0`` per unit of added error ``Δminerr`` that still fits the
    budget and K / switch limits. Never makes a plan infeasible or costlier in ``D0``."""
    L = np.arange(p.L)
    lv = np.asarray(lv).copy()
    while time.perf_counter() < deadline:
        cur = D0[L, lv]
        slack = p.budget - minerr[L, lv].sum()
        moves = []  # (saving per added error, domain l or -1, new level v, relabelled level u or None)
        save = cur[:, None] - D0  # [L, V]
        add = minerr - minerr[L, lv][:, None]
        ok = (save > 1e-12 * np.abs(cur)[:, None]) & (add <= slack) & np.isfinite(D0)
        for l, v in zip(*np.nonzero(ok)):
            moves.append((save[l, v] / max(add[l, v], 1e-300), l, v, None))
        for u in np.unique(lv):
            at = lv == u
            for v in range(p.V):
                if v == u or not np.isfinite(D0[at, v]).all():
                    continue
                s_, a_ = float(save[at, v].sum()), float(add[at, v].sum())
                if s_ > 1e-12 * float(np.abs(cur[at]).sum()) and a_ <= slack:
                    moves.append((s_ / max(a_, 1e-300), -1, v, u))
        for _, l, v, u in sorted(moves, key=lambda m: -m[0]):
            trial = lv.copy()
            if u is None:
                trial[l] = v
            else:
                trial[lv == u] = v
            if _ok(p, trial):
                lv = trial
                break
        else:
            return lv
    return lv


def greedy_levels(p: Problem, deadline: float = np.inf) -> tuple[np.ndarray | None, int]:
    """Steps 1–3: the greedy level vector (None if no level vector meets K / switch limits)."""
    D0 = base_level_cost(p)
    minerr = _per_level_min(p, p.err)
    sw = p.w_latency * p.switch_time_s + p.w_energy * p.switch_energy_j
    _, lv = best_levels(D0, sw, p.max_levels, p.max_switches)
    if lv is None:
        return None, 0
    lv, steps = repair_levels(p, lv, D0, minerr, deadline)
    if minerr[np.arange(p.L), lv].sum() <= p.budget:
        lv = improve_levels(p, lv, D0, minerr, deadline)
    return lv, steps


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None) -> Result:
    t0 = time.perf_counter()
    p = problem
    if p.fold:
        from .fold import greedy as fold_greedy

        return fold_greedy(p, time_limit)
    refuse_layer_budgets(p, "greedy")
    lv, steps = greedy_levels(p, t0 + time_limit)
    if lv is None:
        return finish(p, "greedy", None, -math.inf, t0)
    return finish(p, "greedy", fill(p, lv), -math.inf, t0, level_moves=steps)
