"""Exact level choice for separable domain costs under K and switch limits.

    min_{v_0..v_{L-1}}  Σ_l cost[l, v_l] + sw·#{l ≥ 1: v_l ≠ v_{l-1}}
    s.t. |{v_l}| ≤ K,  #switches ≤ S

Enumerate the level sets U with |U| = min(K, V) (a larger set never hurts, so sets of size
exactly K cover every smaller one), all at once as a [n_sets, V] mask; a DP over domains in
order with state (switches used, current level) runs vectorised over the sets:
``f_l[s, v] = cost[l, v] + min(f_{l-1}[s, v], min_u f_{l-1}[s-1, u] + sw)``.
Cost O(L · n_sets · (S+1) · V); without a switch limit S collapses to 0.
"""

from __future__ import annotations

import itertools

import numpy as np


def best_levels(cost: np.ndarray, sw: float = 0.0, K: int | None = None,
                max_switches: int | None = None) -> tuple[float, np.ndarray | None]:
    """Return (optimal value, level per domain); (inf, None) if no choice is finite."""
    cost = np.asarray(cost, float)
    L, V = cost.shape
    usable = np.flatnonzero(np.isfinite(cost).any(0))
    k = len(usable) if K is None else min(K, len(usable))
    if L == 0:
        return 0.0, np.zeros(0, np.int64)
    if k == 0:
        return np.inf, None
    sets = list(itertools.combinations(usable.tolist(), k))
    mask = np.zeros((len(sets), V), bool)
    for i, s in enumerate(sets):
        mask[i, list(s)] = True
    S = 0 if max_switches is None or max_switches >= L - 1 else int(max_switches)
    limited = max_switches is not None and max_switches < L - 1
    f = np.where(mask[:, None, :], cost[0][None, None, :], np.inf)  # [n_sets, S+1, V]
    if limited:
        f = np.concatenate([f, np.full((len(sets), S, V), np.inf)], 1)
    came = np.zeros((L, len(sets), S + 1, V), bool)  # True: arrived by a switch
    prev = np.zeros((L, len(sets), S + 1), np.int64)  # argmin level before a switch
    for l in range(1, L):
        c = np.where(mask, cost[l][None, :], np.inf)[:, None, :]
        if limited:
            best_prev = f.min(2)  # [n, S+1]
            arg_prev = f.argmin(2)
            sw_val = np.full_like(best_prev, np.inf)
            sw_val[:, 1:] = best_prev[:, :-1] + sw
            sw_arg = np.zeros_like(arg_prev)
            sw_arg[:, 1:] = arg_prev[:, :-1]
        else:
            sw_val = f.min(2) + sw
            sw_arg = f.argmin(2)
        take_sw = sw_val[:, :, None] < f
        came[l] = take_sw
        prev[l] = sw_arg
        f = np.where(take_sw, sw_val[:, :, None], f) + c
    flat = f.reshape(-1)
    j = int(flat.argmin())
    val = float(flat[j])
    if not np.isfinite(val):
        return np.inf, None
    i, s, v = np.unravel_index(j, f.shape)
    level = np.zeros(L, np.int64)
    for l in range(L - 1, -1, -1):
        level[l] = v
        if l and came[l, i, s, v]:
            v = prev[l, i, s]
            if limited:
                s -= 1
    return val, level
