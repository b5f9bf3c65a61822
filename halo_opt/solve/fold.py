"""Fold granularity (a level per tile): the exact structure DP, codebook fill, and the Lagrangian
and greedy solvers for fold problems (``Problem.tile_lat`` given; see :mod:`.problem`).

Structure DP. For per-tile costs ``a[g, v]`` (``inf`` where the tile has no option at ``v``),

    min_{U_0..U_{L-1}}  Σ_l Σ_{g∈l} count_g · min_{v∈U_l} a[g, v] + sw · switches(U)
    s.t. |∪ U_l| ≤ K,  switches(U) ≤ S

with ``switches`` the fewest level changes of :func:`.problem.fold_order`. Enumerate the global
level sets of size ``min(K, usable)`` (a larger set never hurts), each layer's non-empty subsets
``U`` of it, and run a DP over layers with state (switches so far, level the last layer ends on):
a layer with ``k`` levels costs ``k − 1`` switches inside and ends on ``e ∈ U``; it begins without
a boundary switch iff the previous end lies in ``U ∖ {e}`` (``{e}`` when ``k = 1``). Cost
``O(L · n_sets · 2^k · (S+1) · V)``; without a switch limit S collapses to 0, and with no switch
cost nor limit each tile simply takes its best level of the set.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np

from ..errors import UserError
from .fill import fill_options
from .lagrange import bisect_lambda, dual_bound
from .problem import Assignment, Problem, cap_tol, evaluate, refuse_layer_budgets
from .result import Result, finish

MAX_SUBSET_BITS = 13  # 2^13 per-layer level subsets: beyond that set max_levels


def _masks_upto(usable: list[int], k: int) -> list[int]:
    """Bit masks of every non-empty subset of ``usable`` with at most ``k`` levels, by size."""
    return [sum(1 << v for v in c) for j in range(1, k + 1) for c in itertools.combinations(usable, j)]


def fold_structure(a: np.ndarray, count: np.ndarray, gdom: np.ndarray, L: int, sw: float = 0.0,
                   K: int | None = None, max_switches: int | None = None) -> tuple[float, np.ndarray | None]:
    """(optimal value, used [L, V] bool) of the structure problem above; (inf, None) if none is finite."""
    a = np.asarray(a, float)
    G, V = a.shape
    used = np.zeros((L, V), bool)
    if G == 0:
        return 0.0, used
    usable = np.flatnonzero(np.isfinite(a).any(0)).tolist()
    k = len(usable) if K is None else min(K, len(usable))
    if k == 0:
        return math.inf, None
    wa = count[:, None] * a  # [G, V] cost of the whole group at v
    if sw == 0 and max_switches is None:  # structure is free: every group takes its best level of the set
        best, best_used = math.inf, None
        for S_ in itertools.combinations(usable, k):
            sub = wa[:, list(S_)]
            val = float(sub.min(1).sum())
            if val < best:
                best = val
                best_used = np.zeros((L, V), bool)
                np.logical_or.at(best_used, (gdom, np.array(S_)[sub.argmin(1)]), True)
        return best, best_used
    if k > MAX_SUBSET_BITS:
        raise UserError(f"fold granularity with {k} usable levels and switch costs needs 2^{k} level subsets per layer; "
                        f"set max_levels (K) to <= {MAX_SUBSET_BITS}")
    masks = _masks_upto(usable, k)
    mid = {m: i for i, m in enumerate(masks)}
    M = np.empty((len(masks), G))  # min over the mask's levels, per group (tile)
    for i, m in enumerate(masks):
        low = (m & -m).bit_length() - 1
        rest = m & (m - 1)
        M[i] = a[:, low] if rest == 0 else np.minimum(M[mid[rest]], a[:, low])
    ne = np.unique(gdom)  # layers with tiles, in order
    onehot = np.zeros((G, len(ne)))
    onehot[np.arange(G), np.searchsorted(ne, gdom)] = count
    fin = np.isfinite(M)
    D = np.where(fin, M, 0.0) @ onehot  # [n_masks, n_ne]
    D[(~fin).astype(float) @ (onehot > 0) > 0] = np.inf
    sets = list(itertools.combinations(usable, k))
    rel = [c for j in range(1, k + 1) for c in itertools.combinations(range(k), j)]  # subsets of a set, by size
    sizes = np.array([len(c) for c in rel])
    sub_id = np.array([[mid[sum(1 << s_[i] for i in c)] for c in rel] for s_ in sets])  # [n_sets, n_sub]
    sub_mask = np.zeros((len(sets), len(rel), V), bool)
    for i, s_ in enumerate(sets):
        for j, c in enumerate(rel):
            sub_mask[i, j, [s_[t] for t in c]] = True
    n_ne = len(ne)
    most = (k - 1) * n_ne + n_ne - 1
    limited = max_switches is not None and max_switches < most
    S = int(max_switches) if limited else 0
    n_sets, n_sub = sub_id.shape
    f = None
    back = []  # per layer: chosen subset, previous switches and end level, [n_sets, S+1, V]
    for li in range(n_ne):
        Dl = D[sub_id, li]  # [n_sets, n_sub]
        new = np.full((n_sets, S + 1, V), np.inf)
        bj = np.zeros((n_sets, S + 1, V), np.int64)
        bs = np.zeros((n_sets, S + 1, V), np.int64)
        bp = np.zeros((n_sets, S + 1, V), np.int64)
        if f is not None:
            g = f.min(2)  # [n_sets, S+1]
            garg = f.argmin(2)
        for kk in np.unique(sizes):
            js = np.flatnonzero(sizes == kk)
            mk = sub_mask[:, js]  # [n_sets, nj, V]
            base = Dl[:, js] + sw * (kk - 1)  # [n_sets, nj]
            inner = kk - 1
            opts = []  # (candidate values, previous end level, switches added) per way in
            if f is None:
                cand = np.where(mk[:, :, None, :], base[:, :, None, None], np.inf) * np.ones((1, 1, S + 1, 1))
                opts.append((cand, np.zeros(cand.shape, np.int64), inner))
            else:
                fm = np.where(mk[:, :, None, :], f[:, None, :, :], np.inf)  # [n_sets, nj, S+1, V]
                if kk == 1:
                    stay, stay_p = fm, np.broadcast_to(np.arange(V), fm.shape)
                else:
                    a1 = fm.argmin(3)
                    v1 = np.take_along_axis(fm, a1[..., None], 3)[..., 0]
                    fm2 = fm.copy()
                    np.put_along_axis(fm2, a1[..., None], np.inf, 3)
                    a2 = fm2.argmin(3)
                    v2 = np.take_along_axis(fm2, a2[..., None], 3)[..., 0]
                    is1 = np.arange(V)[None, None, None, :] == a1[..., None]
                    stay = np.where(is1, v2[..., None], v1[..., None])
                    stay_p = np.where(is1, a2[..., None], a1[..., None])
                swv = (g + sw)[:, None, :, None] * np.ones((1, len(js), 1, V))
                inside = lambda x: np.where(mk[:, :, None, :], x + base[:, :, None, None], np.inf)  # noqa: E731
                if limited:  # the two ways in add different switch counts
                    opts.append((inside(stay), stay_p, inner))
                    opts.append((inside(swv), np.broadcast_to(garg[:, None, :, None], fm.shape), inner + 1))
                else:
                    take_sw = swv < stay
                    opts.append((inside(np.where(take_sw, swv, stay)),
                                 np.where(take_sw, garg[:, None, :, None], stay_p), 0))
            for cand, pp, sh in opts:
                ps = np.broadcast_to(np.arange(S + 1)[None, None, :, None], cand.shape)
                if limited:  # switches so far + sh must stay ≤ S: move entries s → s + sh
                    if sh > S:
                        continue
                    c2 = np.full_like(cand, np.inf)
                    p2s = np.zeros(cand.shape, np.int64)
                    p2p = np.zeros(cand.shape, np.int64)
                    if f is None:
                        c2[:, :, sh, :] = cand[:, :, 0, :]
                    else:
                        c2[:, :, sh:, :] = cand[:, :, :S + 1 - sh, :]
                        p2s[:, :, sh:, :] = ps[:, :, :S + 1 - sh, :]
                        p2p[:, :, sh:, :] = pp[:, :, :S + 1 - sh, :]
                    _merge(new, bj, bs, bp, c2, js, p2s, p2p)
                else:
                    _merge(new, bj, bs, bp, cand, js, np.zeros(cand.shape, np.int64), pp)
        f = new
        back.append((bj, bs, bp))
    flat = f.reshape(-1)
    j = int(flat.argmin())
    val = float(flat[j])
    if not np.isfinite(val):
        return math.inf, None
    i, s, e = np.unravel_index(j, f.shape)
    for li in range(n_ne - 1, -1, -1):
        bj, bs, bp = back[li]
        jj, s2, p2 = bj[i, s, e], bs[i, s, e], bp[i, s, e]
        used[ne[li]] = sub_mask[i, jj]
        s, e = s2, p2
    return val, used


def _merge(new, bj, bs, bp, cand, js, ps, pp) -> None:
    """Keep, per (set, switches, end), the cheapest candidate over the subsets ``js``."""
    jm = cand.argmin(1)  # [n_sets, S+1, V]
    v = np.take_along_axis(cand, jm[:, None], 1)[:, 0]
    better = v < new
    new[better] = v[better]
    bj[better] = np.asarray(js)[jm][better]
    bs[better] = np.take_along_axis(np.broadcast_to(ps, cand.shape), jm[:, None], 1)[:, 0][better]
    bp[better] = np.take_along_axis(np.broadcast_to(pp, cand.shape), jm[:, None], 1)[:, 0][better]


# ---- per-option arrays (option o = c·V + v) ----

def option_cost(p: Problem) -> np.ndarray:
    """[G, C·V] objective cost of one tile on option (c, v), switches excluded."""
    lvl = (p.w_latency + p.w_energy * p.leak_w)[None, :] * p.tile_lat  # [G, V]
    dyn = p.w_energy * p.energy_dyn[:, :, None] * p.sigma[None, None, :]  # [G, C, V]
    return (dyn + lvl[:, None, :]).reshape(p.G, p.C * p.V)


def option_err(p: Problem) -> np.ndarray:
    return np.repeat(p.err, p.V, axis=1)


def option_allowed(p: Problem, used: np.ndarray | None = None) -> np.ndarray:
    """[G, C·V]: compatible options, at the levels ``used[l]`` of the tile's layer when given."""
    ok = np.broadcast_to(p.compat[None], (p.G, p.C, p.V))
    if used is not None:
        ok = ok & used[p.group_domain][:, None, :]
    return ok.reshape(p.G, p.C * p.V)


def per_level_min(p: Problem, tile_val: np.ndarray, lam_err: float = 0.0) -> np.ndarray:
    """[G, V] min over compatible codebooks of ``tile_val[g, c] (+ λ·err)``; inf where none."""
    z = tile_val + lam_err * p.err if lam_err else tile_val
    return np.where(p.compat[None], z[:, :, None], np.inf).min(1) if p.C else np.full((p.G, p.V), np.inf)


def sw_cost(p: Problem) -> float:
    return p.w_latency * p.switch_time_s + p.w_energy * p.switch_energy_j


def fill_fold(p: Problem, used: np.ndarray, lam_hint: float | None = None) -> Assignment | None:
    """Best codebooks and levels of each tile among its layer's levels ``used[l]`` under the budget."""
    c = fill_options(p.count, option_cost(p), option_err(p), option_allowed(p, used), p.budget, lam_hint=lam_hint)
    return None if c is None else Assignment.from_fold(p, c.reshape(p.G, p.C, p.V))


# ---- single-constraint minima (exact; diagnosis of fold problems) ----

def _struct(p: Problem, a: np.ndarray, sw: float) -> float:
    return fold_structure(a, p.count, p.group_domain, p.L, sw, p.max_levels, p.max_switches)[0]


def min_error(p: Problem) -> float:
    return _struct(p, per_level_min(p, p.err), 0.0)


def min_latency(p: Problem) -> float:
    a = np.where(np.isfinite(per_level_min(p, p.err)), p.tile_lat, np.inf)
    return _struct(p, a, p.switch_time_s)


def min_energy(p: Problem) -> float:
    a = per_level_min(p, p.energy_dyn) * p.sigma[None, :] + p.leak_w[None, :] * p.tile_lat
    return _struct(p, a, p.switch_energy_j)


def layer_min_error(p: Problem, nl: int) -> np.ndarray:
    gm = per_level_min(p, p.err).min(1)
    return np.bincount(p.group_layer, weights=p.count * gm, minlength=nl)


# ---- solvers ----

def _best(p: Problem, plans) -> tuple[Assignment | None, float]:
    best, best_obj = None, math.inf
    for a in plans:
        if a is None:
            continue
        e = evaluate(p, a)
        if e.feasible and e.objective < best_obj:
            best, best_obj = a, e.objective
    return best, best_obj


def lagrange(p: Problem, time_limit: float = 60.0, hint=None, iters: int = 60, max_fills: int = 4) -> Result:
    """Lagrangian relaxation of the error budget at fold granularity (method of :mod:`.lagrange`,
    the structure DP in place of the level DP); the bound holds for every plan evaluate accepts."""
    t0 = time.perf_counter()
    refuse_layer_budgets(p, "lagrange")
    sw = sw_cost(p)
    cost = option_cost(p).reshape(p.G, p.C, p.V)
    ok = np.broadcast_to(p.compat[None], cost.shape)
    gi = np.arange(p.G)
    B = p.budget

    def lagr(lam):
        z = np.where(ok, cost + lam * p.err[:, :, None], np.inf)
        a = z.min(1)  # [G, V]
        val, used = fold_structure(a, p.count, p.group_domain, p.L, sw, p.max_levels, p.max_switches)
        if used is None:
            return math.inf, None, math.inf
        zz = np.where(used[p.group_domain][:, None, :], z, np.inf).reshape(p.G, p.C * p.V)
        if lam == 0:  # ties → lower error
            zmin = zz.min(1, keepdims=True)
            o = np.where(zz <= zmin + 1e-12 * np.abs(zmin), np.repeat(p.err, p.V, 1), np.inf).argmin(1)
        else:
            o = zz.argmin(1)
        err = float((p.count * p.err[gi, o // p.V]).sum())
        return val, used, err

    best_bound, bound_lam, seen, n_eval = -math.inf, 0.0, {}, 0

    def ev(lam):
        nonlocal best_bound, bound_lam, n_eval
        n_eval += 1
        val, used, err = lagr(lam)
        if used is not None:
            seen.setdefault(used.tobytes(), used)
            d = dual_bound(val, lam, B)
            if d > best_bound:
                best_bound, bound_lam = d, lam
        return used, err

    u0, e0 = ev(0.0)
    if u0 is None:
        return finish(p, "lagrange", None, math.inf, t0, status="infeasible")
    plans = []
    lo = hi = 0.0
    if e0 <= B:
        plans.append(fill_fold(p, u0))
    else:
        if min_error(p) > cap_tol(B):
            return finish(p, "lagrange", None, math.inf, t0, status="infeasible")
        scale = max(float(np.where(np.isfinite(cost), cost, 0).sum() * p.count.max()) + sw * p.L * p.V, 1e-300)
        lo, u_lo, hi, u_hi = bisect_lambda(ev, B, u0, scale, iters, t0, time_limit)
        cand = {u_hi.tobytes(): u_hi, u_lo.tobytes(): u_lo} | seen
        for used in list(cand.values())[:max_fills]:
            plans.append(fill_fold(p, used, lam_hint=hi))
        if hint is not None and hint.fold_counts is not None:
            from .problem import layer_levels_used

            plans.append(fill_fold(p, layer_levels_used(p, hint.fold_counts)))
        plans.append(greedy_plan(p))
    best, _ = _best(p, plans)
    return finish(p, "lagrange", best, best_bound, t0, lam_bracket=(lo, hi), bound_lambda=bound_lam, n_eval=n_eval)


def greedy_plan(p: Problem) -> Assignment | None:
    """Greedy fold plan: the cheapest structure ignoring the budget (structure DP on each tile's
    cheapest option), and the least-error structure; codebooks and levels filled within each;
    the better feasible plan."""
    sw = sw_cost(p)
    cost = option_cost(p).reshape(p.G, p.C, p.V)
    a_cost = np.where(p.compat[None], cost, np.inf).min(1)
    plans = []
    for a, s in ((a_cost, sw), (per_level_min(p, p.err), 0.0)):
        _, used = fold_structure(a, p.count, p.group_domain, p.L, s, p.max_levels, p.max_switches)
        if used is not None:
            plans.append(fill_fold(p, used))
    return _best(p, plans)[0]


def greedy(p: Problem, time_limit: float = 60.0) -> Result:
    t0 = time.perf_counter()
    refuse_layer_budgets(p, "greedy")
    return finish(p, "greedy", greedy_plan(p), -math.inf, t0)
