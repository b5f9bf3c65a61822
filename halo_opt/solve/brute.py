"""Exhaustive oracle for tiny problems: every level vector × every per-tile codebook choice.

Groups are expanded to single tiles. Cost is O(V^L · Π_t |options_t|): use it only on tiny
problems (tests). Feasibility and objective come from the shared :func:`evaluate` rules,
re-implemented here vectorised over all codebook combinations, then the winner is checked
with :func:`evaluate` itself.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np

from ..errors import UserError
from .problem import Assignment, Problem, cap_tol
from .result import Result, finish


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None,
          max_combos: int = 5_000_000) -> Result:
    t0 = time.perf_counter()
    p = problem
    if p.fold:
        return _fold(p, t0, max_combos)
    tg = np.repeat(np.arange(p.G), p.count)  # tile → group
    T = len(tg)
    best, best_a = math.inf, None
    le_of = lambda x, cap: x <= cap_tol(cap)  # noqa: E731  (evaluate's rule)
    for lv in itertools.product(range(p.V), repeat=p.L):
        lv = np.array(lv)
        nsw = int((lv[1:] != lv[:-1]).sum())
        if p.max_levels is not None and len(set(lv.tolist())) > p.max_levels:
            continue
        if p.max_switches is not None and nsw > p.max_switches:
            continue
        lat_l = p.lat[np.arange(p.L), lv]
        latency = lat_l.sum() + nsw * p.switch_time_s
        e_fixed = (p.leak_w[lv] * lat_l).sum() + nsw * p.switch_energy_j
        if not le_of(latency, p.latency_cap):
            continue
        tv = lv[p.group_domain[tg]]  # level per tile
        opts = [np.flatnonzero(p.compat[:, v]) for v in tv]
        if any(len(o) == 0 for o in opts):
            continue
        n_comb = math.prod(len(o) for o in opts)
        if n_comb > max_combos:
            raise UserError(f"brute force needs {n_comb} combinations; use it on tiny problems only (try --solver cpsat)")
        idx = np.indices([len(o) for o in opts]).reshape(T, -1) if T else np.zeros((0, 1), int)
        ch = np.stack([opts[t][idx[t]] for t in range(T)]) if T else np.zeros((0, 1), int)  # [T, n]
        g = tg[:, None]
        err = p.err[g, ch].sum(0)
        energy = (p.energy_dyn[g, ch] * p.sigma[tv][:, None]).sum(0) + e_fixed
        ok = le_of(err, p.budget) & le_of(energy, p.energy_cap)
        if p.layer_budget is not None:
            for li, b in enumerate(p.layer_budget):
                m = p.group_layer[tg] == li
                ok &= le_of(p.err[g[m], ch[m]].sum(0), b)
        if not ok.any():
            continue
        obj = np.where(ok, p.w_latency * latency + p.w_energy * energy, np.inf)
        k = int(obj.argmin())
        if obj[k] < best:
            best = float(obj[k])
            counts = np.zeros((p.G, p.C), np.int64)
            np.add.at(counts, (tg, ch[:, k]), 1)
            best_a = Assignment(counts, lv)
    if best_a is None:
        return finish(p, "brute", None, math.inf, t0, status="infeasible")
    return finish(p, "brute", best_a, best, t0)


def switches_by_enumeration(used: np.ndarray) -> int:
    """Fewest level changes over every run order: each layer's used levels in every permutation
    (one contiguous run per level), layers in order, empty layers skipped. Independent of the DP
    in :func:`.problem.fold_order` (tests compare them)."""
    per = [list(itertools.permutations(np.flatnonzero(u).tolist())) for u in used if u.any()]
    best = math.inf
    for seq in itertools.product(*per):
        flat = [v for run in seq for v in run]
        best = min(best, sum(a != b for a, b in zip(flat[1:], flat[:-1])))
    return 0 if best == math.inf else int(best)


def _fold(p: Problem, t0: float, max_combos: int) -> Result:
    """Every (codebook, level) per tile; switches by enumerating every run order per usage pattern."""
    tg = np.repeat(np.arange(p.G), p.count)
    T = len(tg)
    pairs = np.argwhere(p.compat)  # [P, 2] (c, v)
    if T and not len(pairs):
        return finish(p, "brute", None, math.inf, t0, status="infeasible")
    n_comb = len(pairs) ** T
    if n_comb > max_combos:
        raise UserError(f"brute force needs {n_comb} combinations; use it on tiny problems only (try --solver cpsat)")
    idx = np.indices([len(pairs)] * T).reshape(T, -1) if T else np.zeros((0, 1), int)
    c, v = pairs[idx, 0] if T else idx, pairs[idx, 1] if T else idx  # [T, n]
    g = tg[:, None]
    err = p.err[g, c].sum(0)
    tl = p.tile_lat[g, v]
    lat_t = tl.sum(0)
    en_t = (p.energy_dyn[g, c] * p.sigma[v] + p.leak_w[v] * tl).sum(0)
    n = idx.shape[1]
    bits = np.zeros(n, np.int64)  # usage pattern: bit l·V + v set iff layer l runs level v
    for t in range(T):
        bits |= np.int64(1) << (p.group_domain[tg[t]] * p.V + v[t]).astype(np.int64)
    pats, inv = np.unique(bits, return_inverse=True)
    nsw_p, nlev_p = np.zeros(len(pats), np.int64), np.zeros(len(pats), np.int64)
    for i, b in enumerate(pats.tolist()):
        used = np.array([[(b >> (l * p.V + vv)) & 1 for vv in range(p.V)] for l in range(p.L)], bool).reshape(p.L, p.V)
        nsw_p[i], nlev_p[i] = switches_by_enumeration(used), int(used.any(0).sum())
    nsw, nlev = nsw_p[inv.ravel()], nlev_p[inv.ravel()]
    latency = lat_t + nsw * p.switch_time_s
    energy = en_t + nsw * p.switch_energy_j
    le_of = lambda x, cap: x <= cap_tol(cap)  # noqa: E731
    ok = le_of(err, p.budget) & le_of(energy, p.energy_cap) & le_of(latency, p.latency_cap)
    if p.max_levels is not None:
        ok &= nlev <= p.max_levels
    if p.max_switches is not None:
        ok &= nsw <= p.max_switches
    if p.layer_budget is not None:
        for li, bgt in enumerate(p.layer_budget):
            m = p.group_layer[tg] == li
            ok &= le_of(p.err[g[m], c[m]].sum(0), bgt)
    if not ok.any():
        return finish(p, "brute", None, math.inf, t0, status="infeasible")
    obj = np.where(ok, p.w_latency * latency + p.w_energy * energy, np.inf)
    k = int(obj.argmin())
    fc = np.zeros((p.G, p.C, p.V), np.int64)
    np.add.at(fc, (tg, c[:, k], v[:, k]), 1)
    return finish(p, "brute", Assignment.from_fold(p, fc), float(obj[k]), t0)
