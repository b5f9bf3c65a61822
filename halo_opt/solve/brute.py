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
