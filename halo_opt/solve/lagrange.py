"""Lagrangian decomposition: relax the error budget with λ ≥ 0.

    d(λ) = min_{levels, codebooks} objective + λ·(error − B)
         = min_levels [ Σ_l D_l(v_l; λ) + switch costs ]  − λ·B,      (K, switch limits exact)
    D_l(v; λ) = lat_l(v)·(w_lat + w_en·leak_v) + Σ_{g∈l} count_g · min_{c: compat[c,v]} (w_en·E_gc·σ_v + λ·e_gc)

Every d(λ) is a valid lower bound (weak duality); the per-tile minimum is one vectorised
numpy pass per level and the level choice is the exact DP of :mod:`.levels`. d is concave in
λ with supergradient ``error(x_λ) − B``: bisection on λ (geometric) brackets λ*. Primal
plans: the levels of both bracket ends and of other λ visited (up to ``max_fills`` distinct
level vectors) re-filled by :func:`.fill.fill`, which moves tiles at the breakpoint while
the budget allows, plus the greedy level vector (:func:`.greedy.greedy_levels`); the best
feasible one then spends leftover budget on cheaper levels (:func:`.greedy.improve_levels`) —
with few domains the duality gap sits in the level choice — and the best plan is returned
(so lagrange is never worse than greedy).
The λ of the best bound is ``info["bound_lambda"]``: d(λ) − λ·B' = (d(λ) − λ·B) + λ·(B − B'),
so the bound for another budget B' follows without a second run.
Energy / latency caps are not relaxed (μ = 0 keeps the bound valid); plans violating them
are discarded. Per-layer budgets: not supported (use cpsat or milp).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .fill import fill
from .greedy import base_level_cost, greedy_levels, improve_levels
from .infeasible import _per_level_min
from .levels import best_levels
from .problem import Assignment, Problem, cap_tol, evaluate, refuse_layer_budgets
from .result import Result, finish


def dual_bound(val: float, lam: float, B: float) -> float:
    """The lower bound ``d(λ) − λ·cap_tol(B)`` from a Lagrangian value ``val`` at multiplier ``lam``:
    valid for every plan that :func:`evaluate` accepts under budget ``B`` (less float rounding).
    Layer and fold granularity share it."""
    lb = lam * cap_tol(B) if math.isfinite(B) else 0.0
    return val - lb - 1e-13 * (abs(val) + lb)


def bisect_lambda(ev, B: float, x0, scale: float, iters: int, t0: float, time_limit: float):
    """Geometric bisection on the multiplier λ of the budget row: ``ev(λ) -> (plan, error)``,
    ``x0`` the plan at λ = 0 (over budget). From ``hi = scale / B`` (grown ×16 until its plan meets
    ``B``) down, halving ``[lo, hi]`` geometrically until ``iters``, the time limit or a relative
    width of 1e-7: ``(lo, plan at lo (over budget), hi, plan at hi (within it))``. Layer and fold
    granularity share it."""
    x_lo = x0
    lo, hi = 0.0, scale / max(B, 1e-300)
    x_hi, e_hi = ev(hi)
    while e_hi > B and hi < 1e300:
        lo, x_lo, hi = hi, x_hi, hi * 16
        x_hi, e_hi = ev(hi)
    for _ in range(iters):
        if time.perf_counter() - t0 > time_limit or hi - lo <= 1e-7 * hi:
            break
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 16
        x, e = ev(mid)
        if e <= B:
            hi, x_hi = mid, x
        else:
            lo, x_lo = mid, x
    return lo, x_lo, hi, x_hi


def _domain_costs(p: Problem, lam: float, Ew: np.ndarray, mask_v: list[np.ndarray]):
    """([L, V] D_l(v; λ), [V, G] argmin codebook per level)."""
    D = np.empty((p.L, p.V))
    arg = np.empty((p.V, p.G), np.int64)
    lat_part = p.lat * (p.w_latency + p.w_energy * p.leak_w)[None, :]
    for v in range(p.V):  # a group with no codebook at v makes its domain's D inf; empty domains stay finite
        z = Ew * p.sigma[v] + lam * p.err if lam > 0 else Ew * p.sigma[v]
        z = np.where(mask_v[v], z, np.inf)
        if lam > 0:
            arg[v] = z.argmin(1)
            zmin = z[np.arange(p.G), arg[v]]
        else:  # ties → lower error (the λ = 0 plan is the least-error among the cheapest)
            zmin = z.min(1)
            tie = z <= zmin[:, None] + 1e-12 * np.abs(zmin)[:, None]
            arg[v] = np.where(tie, p.err, np.inf).argmin(1)
        D[:, v] = lat_part[:, v]
        np.add.at(D[:, v], p.group_domain, p.count * zmin)
    return D, arg


def _best(p: Problem, plans: list[Assignment]) -> tuple[Assignment | None, float]:
    """The feasible plan of least objective (None if none is feasible)."""
    best, best_obj = None, math.inf
    for a in plans:
        e = evaluate(p, a)
        if e.feasible and e.objective < best_obj:
            best, best_obj = a, e.objective
    return best, best_obj


def solve(problem: Problem, time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint=None,
          iters: int = 60, max_fills: int = 4) -> Result:
    t0 = time.perf_counter()
    p = problem
    if p.fold:
        from .fold import lagrange as fold_lagrange

        return fold_lagrange(p, time_limit, hint, iters, max_fills)
    refuse_layer_budgets(p, "lagrange")
    Ew = p.w_energy * p.energy_dyn
    mask_v = [np.broadcast_to(p.compat[:, v], (p.G, p.C)) for v in range(p.V)]
    sw = p.w_latency * p.switch_time_s + p.w_energy * p.switch_energy_j
    B = p.budget
    gi = np.arange(p.G)

    def lagr(lam):
        D, arg = _domain_costs(p, lam, Ew, mask_v)
        val, lv = best_levels(D, sw, p.max_levels, p.max_switches)
        if lv is None:
            return -math.inf if lam == 0 else math.inf, None, math.inf
        ch = arg[lv[p.group_domain], gi]
        err = float((p.count * p.err[gi, ch]).sum())
        return val, Assignment.from_choice(p, ch, lv), err

    best_bound, bound_lam, plans, n_eval = -math.inf, 0.0, [], 0
    seen_levels: dict = {}  # level vectors met during the search (each re-filled for a primal)

    def ev(lam):
        nonlocal best_bound, bound_lam, n_eval
        n_eval += 1
        val, a, err = lagr(lam)
        if a is not None:
            seen_levels.setdefault(a.level.tobytes(), a.level)
            d = dual_bound(val, lam, B)
            if d > best_bound:
                best_bound, bound_lam = d, lam
        return a, err

    a0, e0 = ev(0.0)
    if a0 is None:
        return finish(p, "lagrange", None, math.inf, t0, status="infeasible")
    if e0 <= B:
        plans.append(a0)
        lo = hi = 0.0
    else:
        # error-only DP: the least achievable error under K/switch limits
        from .infeasible import min_error

        if min_error(p) > cap_tol(B):
            return finish(p, "lagrange", None, math.inf, t0, status="infeasible")
        scale = max(float(np.abs(p.lat).sum() * (p.w_latency + p.w_energy * p.leak_w.max()) + Ew.sum()), 1e-300)
        lo, a_lo, hi, a_hi = bisect_lambda(ev, B, a0, scale, iters, t0, time_limit)
        cand = {a_hi.level.tobytes(): a_hi.level, a_lo.level.tobytes(): a_lo.level} | seen_levels
        for lv in list(cand.values())[:max_fills]:
            f = fill(p, lv, lam_hint=hi)
            if f is not None:
                plans.append(f)
        if hint is not None:
            f = fill(p, hint.level)
            if f is not None:
                plans.append(f)
    if e0 > B:  # primal heuristics beside the λ fills (few domains: the gap sits in the levels)
        lv, _ = greedy_levels(p, t0 + time_limit)
        f = fill(p, lv) if lv is not None else None
        if f is not None:
            plans.append(f)
        best, _ = _best(p, plans)
        if best is not None:
            lv = improve_levels(p, best.level, base_level_cost(p), _per_level_min(p, p.err), t0 + time_limit)
            f = fill(p, lv) if not np.array_equal(lv, best.level) else None
            if f is not None:
                plans.append(f)
    best, best_obj = _best(p, plans)
    return finish(p, "lagrange", best, best_bound, t0, lam_bracket=(lo, hi), bound_lambda=bound_lam, n_eval=n_eval)
