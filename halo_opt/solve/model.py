"""The MIP of formulations/formulation.md as a sparse linear model, shared by cpsat/milp/relax.

Variables (all ≥ 0): ``y[l,v]`` binary; ``n[g,c,v]`` integer in [0, count_g] (tiles of group g
on codebook c at level v); ``u[v]`` binary (only when K binds); ``s[l]`` binary switch before
domain l ≥ 1 (only when switches cost something or are limited).

Exact reductions: an option (c, v) of group g is dropped if c misses timing at v, if one tile
alone exceeds the budget (at the evaluator's tolerance), or if another compatible codebook is no worse in error and energy
(all constraints are "≤" with non-negative coefficients, so a dominated option never helps).
When a (g, v) keeps a single option its ``n`` equals ``count_g·y[l,v]`` and is folded into
the coefficients of ``y[l,v]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .problem import Assignment, Problem, cap_tol


@dataclass
class LinearModel:
    obj: np.ndarray  # [n] objective coefficients
    ub: np.ndarray  # [n] upper bounds (lower bounds are 0)
    A: sp.csr_matrix  # [m, n]
    lo: np.ndarray  # [m] row lower bounds (-inf allowed)
    hi: np.ndarray  # [m] row upper bounds (+inf allowed)
    kind: list[str]  # [m] "assign" (integral), "budget", "layer_budget", "energy", "latency", "K", "switch", "max_switches"
    n_y: int = 0
    y_idx: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [L, V] var index of y or -1
    opt_g: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per n-var: group, codebook, level
    opt_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    opt_v: np.ndarray = field(default_factory=lambda: np.zeros(0))
    opt_start: int = 0
    fold_c: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [G, V] folded codebook or -1
    n_sum_bound: float = 0.0  # Σ over variables of their upper bound (for scaling-error bounds)
    dead_domain: bool = False  # some domain has no usable level: trivially infeasible
    units: float = 0.0  # the most variable units a plan sets (CP-SAT's objective-rounding bound)
    fold: dict = field(default_factory=dict)  # fold granularity: index arrays of b, w, e, s, u

    @property
    def n(self) -> int:
        return len(self.obj)


def kept_options(p: Problem) -> np.ndarray:
    """[G, C, V] bool: options surviving the exact reductions above."""
    keep = np.broadcast_to(p.compat[None], (p.G, p.C, p.V)).copy()
    if math.isfinite(p.budget):
        keep &= (p.err <= cap_tol(p.budget))[:, :, None]
    if p.layer_budget is not None:
        keep &= (p.err <= cap_tol(p.layer_budget[p.group_layer])[:, None])[:, :, None]
    energy_matters = p.w_energy > 0 or math.isfinite(p.energy_cap)
    e, E = p.err, p.energy_dyn if energy_matters else np.zeros_like(p.energy_dyn)
    for c in range(p.C):
        for c2 in range(p.C):
            if c2 == c:
                continue
            no_worse = (e[:, c2] <= e[:, c]) & (E[:, c2] <= E[:, c])
            better = (e[:, c2] < e[:, c]) | (E[:, c2] < E[:, c]) | (c2 < c)
            dom = (no_worse & better)[:, None] & keep[:, c2, :]
            keep[:, c, :] &= ~dom
    return keep


def model_size(p: Problem) -> int:
    """Number of variables :func:`build` would create (cheap: no matrices)."""
    keep = kept_options(p)
    n_opt = keep.sum(1)
    dead = np.zeros((p.L, p.V), bool)
    np.logical_or.at(dead, p.group_domain, n_opt == 0)
    multi = (n_opt >= 2) & ~dead[p.group_domain]
    return int((~dead).sum() + (n_opt * multi).sum() + p.L + p.V)


def build(p: Problem) -> LinearModel:
    if p.fold:
        return build_fold(p)
    keep = kept_options(p)
    G, V, L = p.G, p.V, p.L
    n_opt = keep.sum(1)  # [G, V]
    # a level is usable by a domain iff every group there keeps ≥ 1 option
    dead = np.zeros((L, V), bool)
    np.logical_or.at(dead, p.group_domain, n_opt == 0)
    y_idx = np.where(~dead, 0, -1)
    y_idx[~dead] = np.arange((~dead).sum())
    n_y = int((~dead).sum())
    fold = (n_opt == 1) & ~dead[p.group_domain]  # [G, V]
    fold_c = np.where(fold, keep.argmax(1), -1)
    multi = keep & ((n_opt >= 2) & ~dead[p.group_domain])[:, None, :]
    og, oc, ov = np.nonzero(multi)
    n_n = len(og)
    sig = p.sigma
    use_s = L > 1 and (p.switch_time_s > 0 or p.switch_energy_j > 0 or p.max_switches is not None)
    usable = (~dead).any(0)
    use_u = p.max_levels is not None and p.max_levels < usable.sum()
    s0 = n_y + n_n
    u0 = s0 + (L - 1 if use_s else 0)
    nvar = u0 + (V if use_u else 0)

    # per-variable error / energy / latency coefficients
    ly, vy = np.nonzero(~dead)
    err_c = np.zeros(nvar)
    en_c = np.zeros(nvar)
    lat_c = np.zeros(nvar)
    gf, vf = np.nonzero(fold)
    cf = fold_c[gf, vf]
    yf = y_idx[p.group_domain[gf], vf]
    np.add.at(err_c, yf, p.count[gf] * p.err[gf, cf])
    np.add.at(en_c, yf, p.count[gf] * p.energy_dyn[gf, cf] * sig[vf])
    lat_c[:n_y] = p.lat[ly, vy]
    en_c[:n_y] += p.leak_w[vy] * p.lat[ly, vy]
    err_c[n_y:s0] = p.err[og, oc]
    en_c[n_y:s0] = p.energy_dyn[og, oc] * sig[ov]
    if use_s:
        lat_c[s0:u0] = p.switch_time_s
        en_c[s0:u0] = p.switch_energy_j
    obj = p.w_latency * lat_c + p.w_energy * en_c
    ub = np.ones(nvar)
    ub[n_y:s0] = p.count[og]

    rows, cols, vals, lo, hi, kind = [], [], [], [], [], []
    r = 0

    def add(rr, cc, vv, lo_, hi_, k):
        nonlocal r
        rr = np.asarray(rr) + r
        rows.append(rr); cols.append(np.asarray(cc)); vals.append(np.asarray(vv, float))
        m = int(np.max(np.asarray(rr) - r)) + 1 if len(rr) else 0
        lo.append(np.broadcast_to(lo_, m)); hi.append(np.broadcast_to(hi_, m)); kind.extend([k] * m)
        r += m

    # Σ_v y[l,v] = 1
    add(ly, np.arange(n_y), np.ones(n_y), 1.0, 1.0, "assign")
    # Σ_c n[g,c,v] − count_g·y[l,v] = 0 for (g, v) with ≥ 2 options
    gv = np.flatnonzero(((n_opt >= 2) & ~dead[p.group_domain]).ravel())
    if len(gv):
        row_of = np.full(G * V, -1)
        row_of[gv] = np.arange(len(gv))
        rr = row_of[og * V + ov]
        gg, vv = np.divmod(gv, V)
        add(np.concatenate([rr, np.arange(len(gv))]),
            np.concatenate([n_y + np.arange(n_n), y_idx[p.group_domain[gg], vv]]),
            np.concatenate([np.ones(n_n), -p.count[gg].astype(float)]), 0.0, 0.0, "assign")
    allv = np.arange(s0 if not use_s else u0)
    if math.isfinite(p.budget):
        nz = allv[err_c[allv] != 0]
        add(np.zeros(len(nz), int), nz, err_c[nz], -np.inf, p.budget, "budget")
    if p.layer_budget is not None:
        lay = np.full(nvar, -1)
        lay[n_y:s0] = p.group_layer[og]
        # folded y terms: split per layer
        fl = p.group_layer[gf]
        ycoef = {}
        for yi, li, val in zip(yf, fl, p.count[gf] * p.err[gf, cf]):
            ycoef[(li, yi)] = ycoef.get((li, yi), 0.0) + val
        for li, b in enumerate(p.layer_budget):
            if not math.isfinite(b):
                continue
            idx = np.flatnonzero((lay == li) & (err_c != 0))
            ys = [(yi, v) for (l2, yi), v in ycoef.items() if l2 == li and v != 0]
            cc = np.concatenate([idx, np.array([y for y, _ in ys], int)])
            vv_ = np.concatenate([err_c[idx], np.array([v for _, v in ys])])
            if len(cc):
                add(np.zeros(len(cc), int), cc, vv_, -np.inf, b, "layer_budget")
    if math.isfinite(p.energy_cap):
        nz = allv[en_c[allv] != 0]
        add(np.zeros(len(nz), int), nz, en_c[nz], -np.inf, p.energy_cap, "energy")
    if math.isfinite(p.latency_cap):
        nz = allv[lat_c[allv] != 0]
        add(np.zeros(len(nz), int), nz, lat_c[nz], -np.inf, p.latency_cap, "latency")
    if use_u:
        uv = u0 + vy
        add(np.concatenate([np.arange(n_y)] * 2), np.concatenate([np.arange(n_y), uv]),
            np.concatenate([np.ones(n_y), -np.ones(n_y)]), -np.inf, 0.0, "K")
        add(np.zeros(V, int), u0 + np.arange(V), np.ones(V), -np.inf, float(p.max_levels), "K")
    if use_s:
        # s[l] − y[l,v] + y[l−1,v] ≥ 0 for every v usable by l (y[l−1,v] missing means it is 0)
        k = 0
        R, Cc, Vv = [], [], []
        for l in range(1, L):
            for v in range(V):
                if y_idx[l, v] < 0:
                    continue
                R += [k, k]; Cc += [s0 + l - 1, y_idx[l, v]]; Vv += [1.0, -1.0]
                if y_idx[l - 1, v] >= 0:
                    R.append(k); Cc.append(y_idx[l - 1, v]); Vv.append(1.0)
                k += 1
        if k:
            add(R, Cc, Vv, 0.0, np.inf, "switch")
        if p.max_switches is not None:
            add(np.zeros(L - 1, int), s0 + np.arange(L - 1), np.ones(L - 1), -np.inf, float(p.max_switches), "max_switches")

    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, nvar))
    return LinearModel(obj, ub, A, np.concatenate(lo).astype(float), np.concatenate(hi).astype(float), kind,
                       n_y, y_idx, og, oc, ov, n_y, fold_c, float(ub.sum()), bool(dead.all(1).any()),
                       float(p.count.sum()) + 2 * p.L + p.V)


def build_fold(p: Problem) -> LinearModel:
    """The fold-granularity MIP (formulations/formulation.md, "Fold granularity").

    Variables: ``x[g,c,v]`` integer (tiles of group g on codebook c at level v, kept options only);
    per non-empty layer l and level v it can run, ``b[l,v]`` (l begins with v) and ``w[l,v]`` (l
    also runs v, not first) when K binds or switches cost or are limited; ``e[l,v]`` (l ends with
    v) and ``s[j]`` (a switch at the j-th boundary between non-empty layers) when switches cost or
    are limited; ``u[v]`` when K binds. Switches = Σ w + Σ s."""
    keep = kept_options(p)
    G, C, V, L = p.G, p.C, p.V, p.L
    og, oc, ov = np.nonzero(keep)
    n_x = len(og)
    ne = np.unique(p.group_domain)  # non-empty layers in order
    lv_ok = np.zeros((L, V), bool)  # layer l can run level v (some group there keeps an option at v)
    lv_ok[p.group_domain[og], ov] = True
    use_s = p.switch_time_s > 0 or p.switch_energy_j > 0 or p.max_switches is not None
    use_u = p.max_levels is not None and p.max_levels < int(lv_ok.any(0).sum())
    use_z = use_s or use_u
    nv = n_x
    b_idx = np.full((L, V), -1)
    w_idx = np.full((L, V), -1)
    e_idx = np.full((L, V), -1)
    ll, vv = np.nonzero(lv_ok)
    if use_z:
        b_idx[ll, vv] = nv + np.arange(len(ll)); nv += len(ll)
        w_idx[ll, vv] = nv + np.arange(len(ll)); nv += len(ll)
    s_idx = np.zeros(0, np.int64)
    if use_s:
        e_idx[ll, vv] = nv + np.arange(len(ll)); nv += len(ll)
        s_idx = nv + np.arange(max(len(ne) - 1, 0)); nv += len(s_idx)
    u0 = nv
    if use_u:
        nv += V
    lat_c, en_c, err_c = np.zeros(nv), np.zeros(nv), np.zeros(nv)
    lat_c[:n_x] = p.tile_lat[og, ov]
    en_c[:n_x] = p.energy_dyn[og, oc] * p.sigma[ov] + p.leak_w[ov] * p.tile_lat[og, ov]
    err_c[:n_x] = p.err[og, oc]
    swv = np.concatenate([w_idx[lv_ok], s_idx]).astype(np.int64) if use_s else np.zeros(0, np.int64)
    lat_c[swv] = p.switch_time_s
    en_c[swv] = p.switch_energy_j
    obj = p.w_latency * lat_c + p.w_energy * en_c
    ub = np.ones(nv)
    ub[:n_x] = p.count[og]

    R, Cc, Vv, lo, hi, kind = [], [], [], [], [], []

    def row(cols, vals, lo_, hi_, k):
        R.append(np.full(len(cols), len(lo), np.int64)); Cc.append(np.asarray(cols, np.int64)); Vv.append(np.asarray(vals, float))
        lo.append(lo_); hi.append(hi_); kind.append(k)

    x_of_g = [np.flatnonzero(og == g) for g in range(G)]
    for g in range(G):  # Σ_{c,v} x[g,c,v] = count_g
        row(x_of_g[g], np.ones(len(x_of_g[g])), float(p.count[g]), float(p.count[g]), "assign")
    if use_z:
        for g in range(G):  # Σ_c x[g,c,v] − count_g·(b + w)[l,v] ≤ 0
            l = p.group_domain[g]
            for v in np.unique(ov[x_of_g[g]]):
                xs = x_of_g[g][ov[x_of_g[g]] == v]
                row(np.r_[xs, b_idx[l, v], w_idx[l, v]], np.r_[np.ones(len(xs)), -p.count[g], -p.count[g]], -np.inf, 0.0, "assign")
        for l in ne:
            lvs = np.flatnonzero(lv_ok[l])
            row(b_idx[l, lvs], np.ones(len(lvs)), 1.0, 1.0, "assign")  # one begin level
            for v in lvs:
                row([b_idx[l, v], w_idx[l, v]], [1.0, 1.0], -np.inf, 1.0, "assign")
            if use_s:
                row(e_idx[l, lvs], np.ones(len(lvs)), 1.0, 1.0, "assign")  # one end level
                m = len(lvs) - 1
                for v in lvs:
                    row([e_idx[l, v], b_idx[l, v], w_idx[l, v]], [1.0, -1.0, -1.0], -np.inf, 0.0, "assign")
                    if m:  # end = begin only if the layer runs one level: (m)(e − w)[l,v] + Σ_{u≠v} w[l,u] ≤ m
                        oth = [w_idx[l, u] for u in lvs if u != v]
                        row(np.r_[e_idx[l, v], w_idx[l, v], oth], np.r_[m, -m, np.ones(len(oth))], -np.inf, float(m), "switch")
        if use_s:
            for j in range(len(ne) - 1):  # s_j ≥ b[l,v] − e[prev,v]
                pl, l = ne[j], ne[j + 1]
                for v in np.flatnonzero(lv_ok[l]):
                    cols, vals = [s_idx[j], b_idx[l, v]], [1.0, -1.0]
                    if e_idx[pl, v] >= 0:
                        cols.append(e_idx[pl, v]); vals.append(1.0)
                    row(cols, vals, 0.0, np.inf, "switch")
            if p.max_switches is not None:
                row(swv, np.ones(len(swv)), -np.inf, float(p.max_switches), "max_switches")
    if use_u:
        for l, v in zip(ll, vv):
            row([b_idx[l, v], w_idx[l, v], u0 + v], [1.0, 1.0, -1.0], -np.inf, 0.0, "K")
        row(u0 + np.arange(V), np.ones(V), -np.inf, float(p.max_levels), "K")
    xs = np.arange(n_x)
    if math.isfinite(p.budget):
        nz = xs[err_c[xs] != 0]
        row(nz, err_c[nz], -np.inf, p.budget, "budget")
    if p.layer_budget is not None:
        for li, bgt in enumerate(p.layer_budget):
            if math.isfinite(bgt):
                nz = xs[(p.group_layer[og] == li) & (err_c[xs] != 0)]
                if len(nz):
                    row(nz, err_c[nz], -np.inf, bgt, "layer_budget")
    allv = np.arange(u0)
    if math.isfinite(p.energy_cap):
        nz = allv[en_c[allv] != 0]
        row(nz, en_c[nz], -np.inf, p.energy_cap, "energy")
    if math.isfinite(p.latency_cap):
        nz = allv[lat_c[allv] != 0]
        row(nz, lat_c[nz], -np.inf, p.latency_cap, "latency")
    cat = lambda xs_, dt: np.concatenate(xs_).astype(dt) if xs_ else np.zeros(0, dt)  # noqa: E731
    A = sp.csr_matrix((cat(Vv, float), (cat(R, np.int64), cat(Cc, np.int64))), shape=(len(lo), nv))
    dead = bool(G and (np.bincount(og, minlength=G) == 0).any())
    return LinearModel(obj, ub, A, np.array(lo, float), np.array(hi, float), kind, 0, np.full((L, V), -1), og, oc, ov, 0,
                       np.full((G, V), -1), float(ub.sum()), dead, float(ub.sum()),
                       fold={"b": b_idx, "w": w_idx, "e": e_idx, "s": s_idx, "u0": u0 if use_u else -1, "ne": ne})


def decode(p: Problem, m: LinearModel, x: np.ndarray) -> Assignment:
    """Integer solution vector → Assignment (levels from y, counts from n and folded options)."""
    x = np.rint(np.asarray(x, float)).astype(np.int64)
    if p.fold:
        fc = np.zeros((p.G, p.C, p.V), np.int64)
        np.add.at(fc, (m.opt_g, m.opt_c, m.opt_v), x[:len(m.opt_g)])
        return Assignment.from_fold(p, fc)
    yv = np.where(m.y_idx >= 0, x[np.maximum(m.y_idx, 0)], 0)  # [L, V]
    level = yv.argmax(1)
    counts = np.zeros((p.G, p.C), np.int64)
    lv = level[p.group_domain]
    gi = np.arange(p.G)
    fc = m.fold_c[gi, lv]
    f = fc >= 0
    counts[gi[f], fc[f]] = p.count[f]
    sel = lv[m.opt_g] == m.opt_v
    np.add.at(counts, (m.opt_g[sel], m.opt_c[sel]), x[m.opt_start:m.opt_start + len(m.opt_g)][sel])
    return Assignment(counts, level)


def encode(p: Problem, m: LinearModel, a: Assignment) -> np.ndarray:
    """Assignment → solution vector (for hints / warm starts); options missing from the model are dropped."""
    x = np.zeros(m.n)
    if p.fold:
        from .problem import fold_order, layer_levels_used

        fc = a.fold_counts
        x[:len(m.opt_g)] = fc[m.opt_g, m.opt_c, m.opt_v]
        used = layer_levels_used(p, fc)
        _, runs = fold_order(used)
        F = m.fold
        if (F["b"] >= 0).any():
            for l, r in enumerate(runs):
                if not r or F["b"][l, r[0]] < 0:
                    continue
                x[F["b"][l, r[0]]] = 1
                for v in r[1:]:
                    if F["w"][l, v] >= 0:
                        x[F["w"][l, v]] = 1
                if F["e"][l, r[-1]] >= 0:
                    x[F["e"][l, r[-1]]] = 1
            ne = [l for l in F["ne"] if runs[l]]
            for j in range(min(len(F["s"]), len(ne) - 1)):
                x[F["s"][j]] = runs[ne[j + 1]][0] != runs[ne[j]][-1]
        if F["u0"] >= 0:
            x[F["u0"] + np.flatnonzero(used.any(0))] = 1
        return x
    yi = m.y_idx[np.arange(p.L), a.level]
    x[yi[yi >= 0]] = 1
    sel = a.level[p.group_domain[m.opt_g]] == m.opt_v
    x[m.opt_start:m.opt_start + len(m.opt_g)] = np.where(sel, a.counts[m.opt_g, m.opt_c], 0)
    nsw_start = m.opt_start + len(m.opt_g)
    if "switch" in m.kind or "max_switches" in m.kind:
        x[nsw_start:nsw_start + p.L - 1] = a.level[1:] != a.level[:-1]
    if "K" in m.kind:
        u0 = m.n - p.V
        x[u0 + np.unique(a.level)] = 1
    return x
