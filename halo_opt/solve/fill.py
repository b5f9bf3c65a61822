"""Codebook choice for fixed domain levels: a multiple-choice knapsack, solved Lagrangian-style.

With levels fixed, tile g on codebook c costs ``w_energy·energy_dyn[g,c]·σ_v`` and adds
``err[g,c]``. For a multiplier λ ≥ 0 each group independently takes
``argmin_c cost + λ·err`` (vectorised); bisection on λ finds the smallest λ whose choice fits
the budget; groups whose choice differs between the two ends of the final bracket are then
moved, most cost saved per error added first, while the budget allows (partial groups in
whole tiles). The result is within one tile's cost of the LP optimum for those levels.
"""

from __future__ import annotations

import numpy as np

from .problem import Assignment, Problem


def per_tile_cost(p: Problem, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([G, C] objective cost per tile at its domain's level, [G, C] allowed mask)."""
    lv = level[p.group_domain]
    return p.w_energy * p.energy_dyn * p.sigma[lv][:, None], p.compat[:, lv].T


def pick(cost: np.ndarray, err: np.ndarray, allowed: np.ndarray, lam: float) -> np.ndarray:
    """[G] argmin_c cost + λ·err over allowed codebooks (at λ = 0, ties → lower error)."""
    z = np.where(allowed, cost + lam * err if lam else cost, np.inf)
    if lam:
        return z.argmin(1)
    zmin = z.min(1, keepdims=True)
    tie = z <= zmin + 1e-12 * np.abs(zmin)
    return np.where(tie, err, np.inf).argmin(1)


def move_ties(count, err, cost, hi_choice, lo_choice, slack: float) -> np.ndarray:
    """counts [G, O]: start at ``hi_choice`` (fits), move tiles toward ``lo_choice`` (cheaper, more error)."""
    G, O = err.shape
    g = np.arange(G)
    counts = np.zeros((G, O), np.int64)
    counts[g, hi_choice] = count
    d = np.flatnonzero(hi_choice != lo_choice)
    if len(d) == 0 or slack <= 0:
        return counts
    dc = cost[d, hi_choice[d]] - cost[d, lo_choice[d]]  # saving per tile (≥ 0 up to ties)
    de = err[d, lo_choice[d]] - err[d, hi_choice[d]]  # error added per tile
    good = (dc > 0) & (de >= 0)
    d, dc, de = d[good], dc[good], de[good]
    order = np.argsort(-dc / np.maximum(de, 1e-300), kind="stable")
    d, de = d[order], de[order]
    full = count[d] * de
    cum = np.cumsum(full)
    n_take = np.where(cum <= slack * (1 - 1e-12), count[d], 0)
    k = int(np.searchsorted(cum > slack * (1 - 1e-12), True))  # first group that does not fit whole
    if k < len(d) and de[k] > 0:
        rest = slack - (cum[k - 1] if k else 0.0)
        n_take[k] = max(0, min(count[d[k]], int(np.floor(rest / de[k] * (1 - 1e-12)))))
    n_take[k + 1:] = 0
    counts[d, hi_choice[d]] -= n_take
    counts[d, lo_choice[d]] += n_take
    return counts


def fill(p: Problem, level: np.ndarray, iters: int = 60, lam_hint: float | None = None,
         rtol: float = 1e-6) -> Assignment | None:
    """Best codebooks for the given levels under the error budget; None if even the least-error
    choice exceeds it or a domain's level admits no codebook. ``lam_hint``: a multiplier near
    the answer (from an outer Lagrangian search) to start the bracket from."""
    level = np.asarray(level, np.int64)
    cost, allowed = per_tile_cost(p, level)
    counts = fill_options(p.count, cost, p.err, allowed, p.budget, iters, lam_hint, rtol)
    return None if counts is None else Assignment(counts, level)


def fill_options(count, cost, err, allowed, B: float, iters: int = 60, lam_hint: float | None = None,
                 rtol: float = 1e-6) -> np.ndarray | None:
    """counts [G, O]: ``count[g]`` tiles of each group spread over its allowed options ``o`` (cost
    ``cost[g,o]``, error ``err[g,o]``) under the error budget ``B`` (the method of :func:`fill`);
    None if even the least-error choice exceeds it or a group has no allowed option."""
    if not allowed.any(1).all():
        return None
    G = len(count)
    gi = np.arange(G)
    e_of = lambda ch: float((count * err[gi, ch]).sum())  # noqa: E731
    ch0 = pick(cost, err, allowed, 0.0)
    if e_of(ch0) <= B:
        out = np.zeros(err.shape, np.int64)
        out[gi, ch0] = count
        return out
    emin = pick(np.zeros_like(cost), err, allowed, 0.0)
    if e_of(emin) > B:
        return None
    c_scale = max(float(np.abs(np.where(allowed, cost, 0)).max()), 1e-300)
    e_scale = max(float(err.max()), 1e-300)
    cap = 1e30 * c_scale / e_scale
    hi = lam_hint * 1.001 if lam_hint else c_scale / e_scale
    ch_hi = pick(cost, err, allowed, hi)
    lo, ch_lo = 0.0, ch0
    while e_of(ch_hi) > B:  # widen upwards until the choice fits
        lo, ch_lo, hi = hi, ch_hi, hi * 4
        if hi > cap:
            hi, ch_hi = cap, emin
            break
        ch_hi = pick(cost, err, allowed, hi)
    if lo == 0.0 and lam_hint:  # try a close lower end first
        cand = pick(cost, err, allowed, lam_hint / 1.001)
        if e_of(cand) > B:
            lo, ch_lo = lam_hint / 1.001, cand
    for _ in range(iters):
        if hi - lo <= rtol * hi or np.array_equal(ch_lo, ch_hi):
            break
        mid = np.sqrt(lo * hi) if lo > 0 else hi / 8
        ch = pick(cost, err, allowed, mid)
        if e_of(ch) <= B:
            hi, ch_hi = mid, ch
        else:
            lo, ch_lo = mid, ch
    return move_ties(count, err, cost, ch_hi, ch_lo, B - e_of(ch_hi))
