"""Which constraint makes a problem infeasible, and the smallest value that would be feasible.

Each single-constraint minimum is exact (a level DP under K and switch limits, other caps
ignored): the least error, per-layer error, latency and energy any plan can reach. A domain
with no tiles runs at any level; a domain with tiles only at levels where each of its tiles
has a codebook meeting timing. Comparisons use :func:`.problem.cap_tol`, the evaluator's
rule, so "infeasible" here means no plan passes :func:`.problem.evaluate`. If each constraint
alone is satisfiable but the problem is not, :func:`explain` says they conflict jointly.
"""

from __future__ import annotations

import math

import numpy as np

from .levels import best_levels
from .problem import Problem, cap_tol


def _per_level_min(p: Problem, tile_val: np.ndarray) -> np.ndarray:
    """[L, V] Σ_{g∈l} count_g · min_{c compat v} tile_val[g, c]; inf where some group of domain l
    has no codebook meeting timing at v (a domain without tiles: 0 at every level)."""
    m = np.where(p.compat.T[None, :, :], tile_val[:, None, :], np.inf).min(2) if p.G else np.zeros((0, p.V))  # [G, V]
    out = np.zeros((p.L, p.V))
    np.add.at(out, p.group_domain, p.count[:, None] * m)
    return out


def min_error(p: Problem) -> float:
    if p.fold:
        from .fold import min_error as f

        return f(p)
    return best_levels(_per_level_min(p, p.err), 0.0, p.max_levels, p.max_switches)[0]


def min_latency(p: Problem) -> float:
    if p.fold:
        from .fold import min_latency as f

        return f(p)
    cost = np.where(np.isfinite(_per_level_min(p, p.err)), p.lat, np.inf)
    return best_levels(cost, p.switch_time_s, p.max_levels, p.max_switches)[0]


def min_energy(p: Problem) -> float:
    if p.fold:
        from .fold import min_energy as f

        return f(p)
    cost = _per_level_min(p, p.energy_dyn) * p.sigma[None, :] + p.leak_w[None, :] * p.lat
    return best_levels(cost, p.switch_energy_j, p.max_levels, p.max_switches)[0]


def min_layer_error(p: Problem) -> np.ndarray:
    """[NL] least error of each layer alone: min over the levels its domain can run at."""
    nl = len(p.layer_budget) if p.layer_budget is not None else int(p.group_layer.max(initial=0)) + 1
    if p.fold:
        from .fold import layer_min_error

        return layer_min_error(p, nl)
    gm = np.where(p.compat.T[None, :, :], p.err[:, None, :], np.inf).min(2) if p.G else np.zeros((0, p.V))  # [G, V]
    usable = np.isfinite(_per_level_min(p, p.err))  # [L, V]
    dom_of_layer = np.full(nl, -1)
    dom_of_layer[p.group_layer] = p.group_domain  # a layer lies in one domain
    le = np.zeros((nl, p.V))
    np.add.at(le, p.group_layer, p.count[:, None] * gm)
    le = np.where(usable[np.maximum(dom_of_layer, 0)] | (dom_of_layer < 0)[:, None], le, np.inf)
    return le.min(1) if p.V else np.zeros(nl)


def diagnose(p: Problem) -> str | None:
    """A one-line explanation with the fix, or None if no single constraint is infeasible alone."""
    if p.fold and p.G and not p.compat.any():  # every tile has the same (codebook, level) pairs
        return (f"layer {p.domain_names[int(p.group_domain[0])]} has tiles but no allowed (codebook, level) pair "
                "meets timing; allow slower levels or more codebooks")
    dead = ~np.isfinite(_per_level_min(p, p.err)).any(1) if not p.fold else np.zeros(p.L, bool)
    if dead.any():
        d = int(np.flatnonzero(dead)[0])
        return (f"domain {p.domain_names[d]} has tiles but no allowed level at which a codebook meets timing; "
                "allow slower levels or more codebooks")
    emin = min_error(p)
    if emin > cap_tol(p.budget):
        free = p.replace(max_levels=None, max_switches=None)
        if min_error(free) <= cap_tol(p.budget):  # the level limits, not the codebooks, bind
            for k in range((p.max_levels or p.V) + 1, p.V + 1):
                if min_error(p.replace(max_levels=k)) <= cap_tol(p.budget):
                    return (f"error budget {p.relative(p.budget):.4g} (relative) cannot be met with K={p.max_levels} levels "
                            f"(smallest achievable relative error {p.relative(emin):.4g}); raise max_levels to >= {k} "
                            f"or --budget to >= {p.relative(emin) * (1 + 1e-6):.4g}")
            return (f"error budget {p.relative(p.budget):.4g} (relative) cannot be met with at most {p.max_switches} level "
                    f"switches (smallest achievable relative error {p.relative(emin):.4g}); raise max_switches or --budget "
                    f"to >= {p.relative(emin) * (1 + 1e-6):.4g}")
        return (f"error budget {p.budget:.3g} (relative {p.relative(p.budget):.4g}) is below the smallest achievable "
                f"error {emin:.3g} (relative {p.relative(emin):.4g}) with the allowed codebooks and levels; "
                f"raise --budget to >= {p.relative(emin) * (1 + 1e-6):.4g}")
    if p.layer_budget is not None:
        le = min_layer_error(p)
        bad = np.flatnonzero(le > cap_tol(p.layer_budget[:len(le)]))
        if len(bad):
            i = int(bad[0])
            name = p.layer_names[i] if i < len(p.layer_names) else str(i)
            return (f"layer {name} budget {p.layer_budget[i]:.3g} is below its smallest achievable "
                    f"error {le[i]:.3g} with the allowed codebooks and levels; raise that layer's budget")
    if math.isfinite(p.latency_cap):
        lmin = min_latency(p)
        if lmin > cap_tol(p.latency_cap):
            return (f"latency cap {p.latency_cap:.4g} s is below the smallest achievable latency {lmin:.4g} s "
                    f"(K={p.max_levels}, max switches={p.max_switches}); raise the latency cap to >= {lmin:.4g}")
    if math.isfinite(p.energy_cap):
        en = min_energy(p)
        if en > cap_tol(p.energy_cap):
            return (f"energy cap {p.energy_cap:.4g} J is below the smallest achievable energy {en:.4g} J; "
                    f"raise the energy cap to >= {en:.4g}")
    return None


def explain(p: Problem) -> str:
    """Message for a problem a solver proved infeasible: the single constraint that fails, or
    the list of constraints that cannot hold together."""
    msg = diagnose(p)
    if msg:
        return msg
    parts = [f"error budget (relative {p.relative(p.budget):.4g})"] if math.isfinite(p.budget) else []
    if p.layer_budget is not None and np.isfinite(p.layer_budget).any():
        parts.append(f"{int(np.isfinite(p.layer_budget).sum())} per-layer budgets")
    if math.isfinite(p.latency_cap):
        parts.append(f"latency cap {p.latency_cap:.4g} s")
    if math.isfinite(p.energy_cap):
        parts.append(f"energy cap {p.energy_cap:.4g} J")
    if p.max_levels is not None:
        parts.append(f"K={p.max_levels}")
    if p.max_switches is not None:
        parts.append(f"max switches={p.max_switches}")
    return ("the constraints " + ", ".join(parts) + " cannot hold together (each alone is satisfiable); "
            "relax one of them, e.g. raise --budget or a cap")
