"""Validate an executed plan: predicted vs measured layer error, and timing of the codes used.

Error. Predicted for layer l: ``Σ_{g∈l} e_{g,c(g)}`` from ``errors.parquet`` (block-diagonal part
of ``tr(ΔW H ΔWᵀ)`` on the calibration Hessian, damped). Measured on held-out inputs x_t fed
to the *float* model (the same inputs the Hessian sees):

    measured_l = (2/n) Σ_t ‖(Ŵ_l − W_l) x_t‖²          (per token, same normalisation as H)

i.e. the full ``tr(ΔW H_heldout ΔWᵀ)``. Spearman's ρ ranks layers by both.

Timing. A tile may only hold codes of its codebook, and its codebook must meet the timing of
its domain's level (``compat[c][v]`` not null). The realised delay of a tile is the max
per-code delay over the codes it actually uses (profile) — never above the codebook's. The
realised level of a domain is the fastest level (least latency) at which, for every tile,
some codebook compatible with that level holds all the tile's used codes; realised energy
weights per-code energy by the tile's code histogram: ``Σ_g macs_g · Σ_q p_g(q) E(q) · (V/V0)²``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from ..errors import require
from .inputs import CostFolder


@contextmanager
def _hooks(layers: dict[str, torch.nn.Module], fn):
    hs = [m.register_forward_hook(lambda mod, inp, out, n=n: fn(n, inp[0])) for n, m in layers.items()]
    try:
        yield
    finally:
        for h in hs:
            h.remove()


def _inputs(layers: dict[str, torch.nn.Module], names, run, fn: Callable[[str, torch.Tensor], None]) -> None:
    """Call ``fn(layer, x [tokens, K])`` for every batch the float model feeds each layer of
    ``names``, padding dropped (``run(set_mask)``: see :func:`measure_output_errors`)."""
    mask: list[torch.Tensor | None] = [None]

    def hook(name: str, x: torch.Tensor) -> None:
        if name in names:
            m = mask[0]
            fn(name, x[m] if m is not None and x.shape[:-1] == m.shape else x.reshape(-1, x.shape[-1]))

    with _hooks(layers, hook):
        run(lambda m: mask.__setitem__(0, None if m is None else m.bool()))


@torch.no_grad()
def measure_output_errors(layers: dict[str, torch.nn.Module], deltas: dict[str, torch.Tensor],
                          run: Callable[[Callable[[torch.Tensor | None], None]], None]) -> dict[str, tuple[float, int]]:
    """``{layer: ((2/n) Σ_t ‖ΔW x_t‖², n)}`` over the tokens the float model feeds each layer.

    ``run(set_mask)`` runs the float model over the held-out batches, calling ``set_mask(mask)``
    before each forward with a bool token mask ``[B, T]`` (padding False) or None. ``deltas``
    are ``Ŵ − W`` per layer (float64).
    """
    acc = {n: [0.0, 0] for n in deltas}

    def add(name: str, x: torch.Tensor) -> None:
        D = deltas[name]
        y = x.to(D.device, D.dtype) @ D.T
        acc[name][0] += float((y * y).sum())
        acc[name][1] += x.shape[0]

    _inputs(layers, deltas, run, add)
    return {n: (2.0 * s / max(k, 1), k) for n, (s, k) in acc.items()}


@torch.no_grad()
def heldout_hessians(layers: dict[str, torch.nn.Module], run) -> dict[str, tuple[torch.Tensor, int]]:
    """``{layer: (H = (2/n) Σ_t x_t x_tᵀ float64, n)}`` over the held-out tokens the float model
    feeds each layer: one forward for all later plans, since ``(2/n) Σ_t ‖ΔW x_t‖² = tr(ΔW H ΔWᵀ)``."""
    acc: dict[str, list] = {}

    def add(name: str, x: torch.Tensor) -> None:
        x = x.double()
        a = acc.setdefault(name, [torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device), 0])
        a[0].addmm_(x.T, x)
        a[1] += x.shape[0]

    _inputs(layers, set(layers), run, add)
    return {n: (2.0 * H / max(k, 1), k) for n, (H, k) in acc.items()}


def output_errors(deltas: dict[str, torch.Tensor], hessians: dict[str, tuple[torch.Tensor, int]]) -> dict[str, tuple[float, int]]:
    """:func:`measure_output_errors` from :func:`heldout_hessians`: ``tr(ΔW H ΔWᵀ)`` per layer (float64)."""
    out = {}
    for n, D in deltas.items():
        H, k = hessians[n]
        out[n] = (float(((D @ H.to(D.device)) * D).sum()), k)
    return out


def predicted_errors(costs: CostFolder, tile_codebook: list[str], local: bool = True) -> pd.Series:
    """Per layer ``Σ_g e_{g, c(g)}`` of the local table (``local``) or of the cost folder's error model."""
    e = costs.local_errors() if local else costs.errors
    vals = np.array([e.at[g, cb] for g, cb in enumerate(tile_codebook)], dtype=np.float64)
    return pd.Series(vals, index=costs.tiles["layer"].to_numpy()).groupby(level=0, sort=False).sum()


def end_to_end(costs: CostFolder, tile_codebook: list[str], kind: str, metrics: dict, ref: dict | None = None) -> dict:
    """Predicted total error of the plan (the cost folder's error model) beside the measured degradation.

    Measured: causal ``log(ppl / ppl_float)`` (mean token NLL increase, nats/token); encoder
    ``1 − cosine_mean``. The Fisher model predicts exactly these quantities, so ``ratio`` =
    measured / predicted should be near 1; the local model's ``Σe/N`` has no common unit with them.
    """
    model = costs.error_model
    total = float(predicted_errors(costs, tile_codebook, local=False).sum())
    if kind == "causal" and "perplexity" in metrics:
        meas, what = math.log(metrics["perplexity"] / metrics["perplexity_float"]), "ΔNLL (nats/token) = log(ppl/ppl_float)"
    elif "cosine_mean" in metrics:
        meas, what = 1.0 - metrics["cosine_mean"], "1 − mean cosine"
    else:
        return {"error_model": model, "predicted": total, "measured": float("nan"), "measured_what": "-", "ratio": float("nan")}
    pred = total if model != "local" else total / float(costs.meta.get("normaliser", 1.0))
    return {"error_model": model, "units": costs.meta.get("error_units"), "predicted": pred, "measured": meas,
            "measured_what": what, "ratio": meas / pred if pred > 0 else float("nan")}


def spearman(a: Iterable[float], b: Iterable[float]) -> float:
    """Spearman rank correlation (nan with fewer than 3 points or constant input)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(list(a), float), np.asarray(list(b), float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def timing_check(costs: CostFolder, tile_codebook: list[str], level_of: dict[str, str],
                 hist: dict[int, dict[int, int]], profile: pd.DataFrame | None = None,
                 tile_level: list[str] | None = None) -> pd.DataFrame:
    """One row per tile: planned codebook/level, codes used, ``in_codebook``, ``meets_timing``,
    ``delay_planned_ps`` (codebook), ``delay_realized_ps`` (max per-code delay of the codes used,
    from ``profile`` [code, delay_ps, energy_fj]; else the tightest cost-folder codebook holding them),
    ``energy_planned_fj`` / ``energy_realized_fj`` per MAC at V0."""
    cbs = costs.codebooks
    sets = {k: set(v["codes"]) for k, v in cbs.items()}
    d_code = e_code = None
    if profile is not None:
        d_code = dict(zip(profile["code"].astype(int), profile["delay_ps"].astype(float)))
        e_code = dict(zip(profile["code"].astype(int), profile["energy_fj"].astype(float)))
    rows = []
    for g, (layer, cb) in enumerate(zip(costs.tiles["layer"], tile_codebook)):
        h = hist[g]
        used = set(h)
        lvl = level_of[layer] if tile_level is None else tile_level[g]
        inside = used <= sets[cb]
        if d_code is not None:
            d_real = max(d_code[q] for q in used)
            n = sum(h.values())
            e_real = sum(e_code[q] * k for q, k in h.items()) / n
        else:
            holders = [k for k, s in sets.items() if used <= s] or [cb]
            d_real = min(cbs[k]["delay_ps"] for k in holders)
            e_real = min(cbs[k]["energy_fj"] for k in holders)
        rows.append(dict(tile=g, layer=layer, codebook=cb, level=lvl, n_codes_used=len(used),
                         in_codebook=inside, meets_timing=inside and costs.compat.get(cb, {}).get(lvl) is not None,
                         delay_planned_ps=float(cbs[cb]["delay_ps"]), delay_realized_ps=float(d_real),
                         energy_planned_fj=float(cbs[cb]["energy_fj"]), energy_realized_fj=float(e_real),
                         macs=int(costs.tiles.at[g, "macs"])))
    return pd.DataFrame(rows)


def realized_cost(costs: CostFolder, plan: dict, tiles: pd.DataFrame, hist: dict[int, dict[int, int]]) -> dict:
    """Planned vs realised latency (s) and energy (J) per the cost model.

    Planned: each domain at its plan level. Realised: each domain at the fastest level where every
    tile's used codes fit a codebook compatible with that level (never slower than planned); dynamic
    energy from the realised per-MAC energies, leakage ``P_leak(v) · latency``.
    """
    v0 = float(costs.meta.get("v0", 1.0))
    if plan.get("tile_level") is not None:
        return _fold_cost(costs, plan, tiles, v0)
    lat = {(r.layer, r.level): float(r.seconds) for r in costs.latency.itertuples()}
    sets = {k: set(v["codes"]) for k, v in costs.codebooks.items()}
    out = {"planned": {"latency_s": 0.0, "energy_j": 0.0}, "realized": {"latency_s": 0.0, "energy_j": 0.0}, "domains": []}
    for d in plan["domains"]:
        t = tiles[tiles["layer"].isin(d["layers"])]
        ok_levels = [v for v in costs.levels
                     if all(any(set(hist[g]) <= sets[c] and costs.compat.get(c, {}).get(v) is not None for c in sets) for g in t["tile"])]
        def seconds(v):
            return sum(lat.get((l, v), np.nan) for l in d["layers"])
        real = min(ok_levels, key=lambda v: (seconds(v), v != d["level"])) if ok_levels else d["level"]
        if not np.isfinite(seconds(real)) or seconds(real) > seconds(d["level"]):
            real = d["level"]
        for key, lvl, col in (("planned", d["level"], "energy_planned_fj"), ("realized", real, "energy_realized_fj")):
            L = costs.levels[lvl]
            s = seconds(lvl)
            dyn = float((t["macs"] * t[col]).sum()) * 1e-15 * (float(L["voltage_v"]) / v0) ** 2
            out[key]["latency_s"] += s
            out[key]["energy_j"] += dyn + float(L.get("leak_power_w", 0.0)) * s
        out["domains"].append({"domain": d["domain"], "planned_level": d["level"], "realized_level": real})
    return out


def _fold_cost(costs: CostFolder, plan: dict, tiles: pd.DataFrame, v0: float) -> dict:
    """Fold plans: every tile at its planned level from ``tile_latency.parquet`` (folds are not
    re-levelled), plus the plan's level switches; dynamic energy from the realised per-MAC energies."""
    require(costs.tile_latency is not None, f"plan has a level per tile but {costs.path} has no tile_latency.parquet; re-plan with these costs")
    sec = {(int(r.tile), r.level): float(r.seconds) for r in costs.tile_latency.itertuples()}
    sw = costs.meta.get("switch") or {}
    n_sw = int((plan.get("predicted") or {}).get("switches") or 0)
    out = {"granularity": "fold", "switches": n_sw, "domains": [{"domain": d["domain"], "planned_runs": d.get("runs")} for d in plan["domains"]]}
    for key, col in (("planned", "energy_planned_fj"), ("realized", "energy_realized_fj")):
        lat = en = 0.0
        for r in tiles.itertuples():
            lvl = plan["tile_level"][int(r.tile)]
            L = costs.levels[lvl]
            s = sec[(int(r.tile), lvl)]
            lat += s
            en += float(r.macs) * float(getattr(r, col)) * 1e-15 * (float(L["voltage_v"]) / v0) ** 2 + float(L.get("leak_power_w", 0.0)) * s
        out[key] = {"latency_s": lat + n_sw * float(sw.get("time_s", 0.0)), "energy_j": en + n_sw * float(sw.get("energy_j", 0.0))}
    return out


def nominal_level(costs: CostFolder) -> str:
    """The nominal level of an executor cost folder (the one definition:
    :func:`halo_opt.costfolder.nominal_level`)."""
    from ..costfolder import nominal_level as _nominal

    return _nominal([{"name": n, **lv} for n, lv in costs.levels.items()], costs.compat, float(costs.meta.get("v0", 1.0)))


def baseline_codebook(costs: CostFolder, bits: str) -> str | None:
    """The codebook a uniform baseline runs on: ``full`` for ``int8``; for ``int4`` the one named
    ``int4``, else the first of 16 consecutive codes (the planner's ``int4`` alias). None if absent."""
    if bits == "int8":
        return "full" if "full" in costs.codebooks else None
    if bits == "int4":
        if "int4" in costs.codebooks:
            return "int4"
        return next((n for n, c in costs.codebooks.items()
                     if len(c["codes"]) == 16 and np.all(np.diff(sorted(c["codes"])) == 1)), None)
    return None


def baseline_cost(costs: CostFolder, bits: str = "int8", granularity: str = "layer") -> dict:
    """Predicted latency (s) and energy (J) per workload pass of the hardware-agnostic baseline
    ``bits`` (``int8``/``int4``): every tile on :func:`baseline_codebook` at :func:`nominal_level`,
    priced exactly as the planner prices a plan (``solve.problem.evaluate``). The one pricing of
    baselines: the executor's report, the demo report and the CLI's speedups all use it.
    ``float`` (not run on the integer MAC) and absent codebooks give NaN."""
    cb = baseline_codebook(costs, bits)
    if cb is None or not costs.levels:
        return {"latency_s": float("nan"), "energy_j": float("nan"), "codebook": cb, "level": None}
    lvl = nominal_level(costs)
    L = costs.levels[lvl]
    v0 = float(costs.meta.get("v0", 1.0))
    if granularity == "fold" and costs.tile_latency is not None:  # the same plan priced fold by fold
        sec = costs.tile_latency[costs.tile_latency["level"] == lvl]["seconds"].astype(float).sum()
    else:
        sec = costs.latency[costs.latency["level"] == lvl]["seconds"].astype(float).sum()
    dyn = float(costs.tiles["macs"].astype(float).sum()) * float(costs.codebooks[cb]["energy_fj"]) * 1e-15
    energy = dyn * (float(L["voltage_v"]) / v0) ** 2 + float(L.get("leak_power_w", 0.0)) * sec
    return {"latency_s": float(sec), "energy_j": float(energy), "codebook": cb, "level": lvl}
