"""Which constraint makes a problem infeasible, and the smallest value that would be feasible.

Each single-constraint minimum is exact (a level DP under K and switch limits, other caps
ignored): the least error, latency and energy any plan can reach. If each constraint alone is
satisfiable but the problem is not, the message says they conflict jointly.
"""

from __future__ import annotations

import math

import numpy as np

from .levels import best_levels
from .problem import Problem


def _per_level_min(p: Problem, tile_val: np.ndarray) -> np.ndarray:
    """[L, V] Σ_{g∈l} count_g · min_{c compat v} tile_val[g, c] (inf where v admits no codebook)."""
    out = np.full((p.L, p.V), np.inf)
    for v in range(p.V):
        if p.compat[:, v].any():
            m = np.where(p.compat[:, v][None, :], tile_val, np.inf).min(1)
            out[:, v] = np.bincount(p.group_domain, weights=p.count * m, minlength=p.L)
    return out


def min_error(p: Problem) -> float:
    return best_levels(_per_level_min(p, p.err), 0.0, p.max_levels, p.max_switches)[0]


def min_latency(p: Problem) -> float:
    cost = np.where(np.isfinite(_per_level_min(p, p.err)), p.lat, np.inf)
    return best_levels(cost, p.switch_time_s, p.max_levels, p.max_switches)[0]


def min_energy(p: Problem) -> float:
    dyn = np.stack([_per_level_min(p, p.energy_dyn)[:, v] * p.sigma[v] for v in range(p.V)], 1)
    cost = dyn + p.leak_w[None, :] * p.lat
    return best_levels(cost, p.switch_energy_j, p.max_levels, p.max_switches)[0]


def diagnose(p: Problem) -> str | None:
    """A one-line explanation with the fix, or None if no single constraint is infeasible alone."""
    if not p.compat.any(0).any():
        return "no codebook meets timing at any allowed level; allow slower levels or more codebooks"
    emin = min_error(p)
    if emin > p.budget * (1 + 1e-9):
        n = p.normaliser
        free = p.replace(max_levels=None, max_switches=None)
        if min_error(free) <= p.budget * (1 + 1e-9):  # the level limits, not the codebooks, bind
            for k in range((p.max_levels or p.V) + 1, p.V + 1):
                if min_error(p.replace(max_levels=k)) <= p.budget * (1 + 1e-9):
                    return (f"error budget {p.budget / n:.4g} (relative) cannot be met with K={p.max_levels} levels "
                            f"(smallest achievable relative error {emin / n:.4g}); raise max_levels to >= {k} "
                            f"or --budget to >= {emin / n * (1 + 1e-6):.4g}")
            return (f"error budget {p.budget / n:.4g} (relative) cannot be met with at most {p.max_switches} level switches "
                    f"(smallest achievable relative error {emin / n:.4g}); raise max_switches or --budget to >= {emin / n * (1 + 1e-6):.4g}")
        return (f"error budget {p.budget:.3g} (relative {p.budget / n:.4g}) is below the smallest achievable "
                f"error {emin:.3g} (relative {emin / n:.4g}) with the allowed codebooks and levels; "
                f"raise --budget to >= {emin / n * (1 + 1e-6):.4g}")
    if p.layer_budget is not None:
        le = np.bincount(p.group_layer, weights=p.count * p.err.min(1), minlength=len(p.layer_budget))
        bad = np.flatnonzero(le > p.layer_budget * (1 + 1e-9))
        if len(bad):
            i = bad[0]
            return (f"layer {p.layer_names[i]} budget {p.layer_budget[i]:.3g} is below its smallest achievable "
                    f"error {le[i]:.3g}; raise that layer's budget")
    if math.isfinite(p.latency_cap):
        lmin = min_latency(p)
        if lmin > p.latency_cap * (1 + 1e-9):
            return (f"latency cap {p.latency_cap:.4g} s is below the smallest achievable latency {lmin:.4g} s "
                    f"(K={p.max_levels}, max switches={p.max_switches}); raise the latency cap to >= {lmin:.4g}")
    if math.isfinite(p.energy_cap):
        en = min_energy(p)
        if en > p.energy_cap * (1 + 1e-9):
            return (f"energy cap {p.energy_cap:.4g} J is below the smallest achievable energy {en:.4g} J; "
                    f"raise the energy cap to >= {en:.4g}")
    return None


def explain(p: Problem) -> str:
    """Message for a problem a solver proved infeasible."""
    msg = diagnose(p)
    if msg:
        return msg
    parts = [f"error budget (relative {p.budget / p.normaliser:.4g})"]
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
