"""Synthetic cost-table folders (docs/contracts.md §4) for tests, demos and scale benchmarks.

Shapes follow real models (``llama2-7b``: 32 blocks × q,k,v,o 4096², gate/up 11008×4096,
down 4096×11008; ``llama2-70b``: 80 blocks, hidden 8192, GQA k/v 1024, FFN 28672; ``tiny``).
Statistics: per-tile base error lognormal (σ = 1) times a per-layer scale (lognormal σ = 1),
codebook factor growing as the code set shrinks, per-(tile, codebook) lognormal noise
(σ = 0.3); codebook delays/energies decrease with the set size; DVFS levels follow
f ∝ (V − Vt)^α / V with Vt = 0.35 V, α = 1.3, normalised at V0; latency is the roofline
max(cycles/f, bytes/BW) (decode-like layers memory-bound). Numbers are invented, not measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..costfolder import save_costs

MODELS = {
    "tiny": (2, [("self_attn.q_proj", 256, 256), ("self_attn.k_proj", 256, 256), ("self_attn.v_proj", 256, 256),
                 ("mlp.gate_proj", 512, 256), ("mlp.up_proj", 512, 256), ("mlp.down_proj", 256, 512)]),
    "llama2-7b": (32, [("self_attn.q_proj", 4096, 4096), ("self_attn.k_proj", 4096, 4096), ("self_attn.v_proj", 4096, 4096),
                       ("self_attn.o_proj", 4096, 4096), ("mlp.gate_proj", 11008, 4096), ("mlp.up_proj", 11008, 4096),
                       ("mlp.down_proj", 4096, 11008)]),
    "llama2-70b": (80, [("self_attn.q_proj", 8192, 8192), ("self_attn.k_proj", 1024, 8192), ("self_attn.v_proj", 1024, 8192),
                        ("self_attn.o_proj", 8192, 8192), ("mlp.gate_proj", 28672, 8192), ("mlp.up_proj", 28672, 8192),
                        ("mlp.down_proj", 8192, 28672)]),
}


def codebook_set(n: int) -> list[dict]:
    """``n`` nested code sets from the 8-bit full grid down to {-1, 0, 1}: (name, codes, delay, energy)."""
    sizes = np.geomspace(256, 3, n).round().astype(int)
    if n >= 3:
        sizes[1 + np.abs(sizes[1:-1] - 16).argmin()] = 16  # keep a uniform INT4 grid
    sizes = np.unique(sizes)[::-1]
    out = []
    for i, s in enumerate(sizes):
        codes = list(range(-128, 128)) if s == 256 else list(range(-(s // 2), s - s // 2))
        name = "full" if s == 256 else ("int4" if s == 16 else f"cb{s}")
        delay = 900.0 * (0.45 + 0.55 * np.log2(s) / 8)  # ps
        energy = 120.0 * (0.35 + 0.65 * np.log2(s) / 8)  # fJ
        out.append({"name": name, "codes": codes, "delay_ps": float(delay), "energy_fj": float(energy), "family": "synthetic"})
    return out


def level_set(n: int, v0: float = 0.9) -> list[dict]:
    """``n`` ≤ 6 (V, f) levels: f = boost · f_law(V), f_law ∝ (V − 0.35)^1.3 / V normalised at v0.

    A boost > 1 overclocks past what the full grid meets: only codebooks whose relative delay
    ≤ 1/boost fit (see :func:`write_costs`)."""
    volts = [v0, 1.0, 0.8, 1.05, v0, 0.7][:n]
    boost = [1.0, 1.6, 1.25, 2.2, 1.9, 1.0][:n]
    law = lambda v: (v - 0.35) ** 1.3 / v  # noqa: E731
    out = []
    for i, (v, k) in enumerate(zip(volts, boost)):
        out.append({"name": "nominal" if i == 0 else f"L{i}_{v:.2f}V_x{k:.2f}", "voltage_v": float(v),
                    "freq_hz": float(1.0e9 * k * law(v) / law(v0)), "leak_power_w": float(0.05 * (v / v0) ** 3),
                    "boost": k, "f_law_hz": float(1.0e9 * law(v) / law(v0))})
    return out


def write_costs(out: str | Path, model: str = "tiny", tile: int = 128, n_codebooks: int = 4, n_levels: int = 3,
                tokens: int = 256, seed: int = 0, margin: float = 0.0) -> Path:
    """Write a synthetic cost-table folder (through :func:`halo_opt.costfolder.save_costs`); returns its path."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    out = Path(out)
    n_blocks, linears = MODELS[model]
    cbs = codebook_set(n_codebooks)
    lvs = level_set(n_levels)
    bw = 2.0e12  # B/s
    layers, tiles, lat_rows, tile_lat_rows = [], [], [], []
    tile_id = 0
    errs = []
    for b in range(n_blocks):
        for name, n_out, n_in in linears:
            lname = f"model.layers.{b}.{name}"
            macs = n_out * n_in * tokens
            cycles = int(np.ceil(n_in / tile) * np.ceil(n_out / tile) * (2 * tile + tile + tokens - 2))
            nbytes = n_out * n_in + 2 * tokens * (n_in + n_out)
            lay_scale = rng.lognormal(0, 1)
            r0s = np.arange(0, n_out, tile)
            c0s = np.arange(0, n_in, tile)
            nt = len(r0s) * len(c0s)
            base = lay_scale * rng.lognormal(0, 1, nt)
            tr_tiles = base * rng.uniform(2e3, 4e3, nt)
            tr = float(tr_tiles.sum())
            rr, cc = np.meshgrid(r0s, c0s, indexing="ij")
            rr, cc = rr.ravel(), cc.ravel()
            tiles.append(pd.DataFrame({"tile": np.arange(tile_id, tile_id + nt), "layer": lname,
                                       "row0": rr, "row1": np.minimum(rr + tile, n_out),
                                       "col0": cc, "col1": np.minimum(cc + tile, n_in),
                                       "macs": (np.minimum(rr + tile, n_out) - rr) * (np.minimum(cc + tile, n_in) - cc) * tokens}))
            fac = np.array([(256 / len(c["codes"])) ** 2 for c in cbs])  # error ∝ step²
            e = base[:, None] * fac[None, :] * rng.lognormal(0, 0.3, (nt, len(cbs)))
            e[:, [c["name"] == "full" for c in cbs]] = base[:, None] * 1.0
            errs.append(e)
            tile_id += nt
            layers.append({"layer": lname, "order": len(layers), "out_features": n_out, "in_features": n_in,
                           "tokens": tokens, "macs": macs, "tr_WHW": tr, "cycles": cycles, "bytes": nbytes, "damp": 0.01})
            for lv in lvs:
                tc, tm = cycles / lv["freq_hz"], nbytes / bw
                lat_rows.append({"layer": lname, "level": lv["name"], "seconds": max(tc, tm), "compute_bound": tc >= tm})
                wt = (np.minimum(rr + tile, n_out) - rr) * (np.minimum(cc + tile, n_in) - cc)  # one fold per tile
                fc, fm = (3 * tile + tokens - 2) / lv["freq_hz"], nbytes * wt / (n_out * n_in) / bw
                tile_lat_rows += [{"tile": tile_id - nt + k, "level": lv["name"], "seconds": float(max(fc, m)), "compute_bound": bool(fc >= m)}
                                  for k, m in enumerate(fm)]
    tiles_df = pd.concat(tiles, ignore_index=True)
    err = np.concatenate(errs)
    errors_df = pd.DataFrame({"tile": tiles_df["tile"]} | {c["name"]: err[:, i] for i, c in enumerate(cbs)})
    v0 = 0.9
    # delay of codebook c at level v: d_c(V) = (delay_c / delay_full) / f_law(V); fits iff ≤ (1+margin)/f_v
    compat = {}
    for c in cbs:
        r = c["delay_ps"] / cbs[0]["delay_ps"]
        compat[c["name"]] = {}
        for lv in lvs:
            period_ps = 1e12 / lv["freq_hz"]
            d_ps = r * 1e12 / lv["f_law_hz"]
            slack = period_ps * (1 + margin) - d_ps
            compat[c["name"]][lv["name"]] = float(slack) if slack >= 0 else None
    lvs = [{k: x[k] for k in ("name", "voltage_v", "freq_hz", "leak_power_w")} for x in lvs]
    normaliser = float(sum(x["tr_WHW"] for x in layers))
    meta = {"halo_opt_version": "synthetic", "inputs": {"model_sha256": f"synthetic-{model}-{seed}", "profile_sha256": "synthetic"},
            "tile": [tile, tile], "normaliser": normaliser, "v0": v0, "switch": {"time_s": 2e-6, "energy_j": 1e-7},
            "accelerator": "synthetic", "workload": {"tokens": tokens, "name": f"synthetic-m{tokens}"}, "fold_tile": [tile, tile]}
    save_costs(out, meta, pd.DataFrame(layers), tiles_df, errors_df, pd.DataFrame(lat_rows), cbs, lvs, compat,
               codebooks_meta={"synthetic": True}, extra_tables={"tile_latency": pd.DataFrame(tile_lat_rows)})
    return out
