"""Cost-table folder (docs/contracts.md §4) + scenario → :class:`Problem`.

Domains: one per layer, per block (first capture group of ``block_pattern``; layers that do
not match keep their own domain) or one for the model; tie groups merge the domains of
layers whose names give the same first capture group of a tie regex. A merged domain sits
at the position of its first layer (switch counting follows that order) and its latency is
the sum of its layers'. Tile energy at v0: ``macs_g · energy_fj[c] · 1e-15`` J.

Granularity ``fold``: every tile takes its own level (domains = layers in execution order, tie
groups and blocks do not apply); tile latencies come from ``tile_latency.parquet``, which
``halo-opt costs`` writes when the tile is the systolic array's fold.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..costfolder import BASELINE_CODEBOOK, load_costs
from ..errors import UserError
from .problem import Problem, aggregate
from .scenario import Scenario, resolve_names


def _domains(layers: list[str], sc: Scenario) -> list[int]:
    """Domain key index per layer (in execution order), before ordering."""
    if sc.granularity == "model":
        keys = ["model"] * len(layers)
    elif sc.granularity == "block":
        pat = re.compile(sc.block_pattern)
        keys = []
        for n in layers:
            m = pat.search(n)
            keys.append(f"block:{m.group(1) if m.groups() else m.group(0)}" if m else f"layer:{n}")
    else:
        keys = [f"layer:{n}" for n in layers]
    parent = list(range(len(layers)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict = {}
    for i, k in enumerate(keys):  # same key → same domain
        if k in first:
            parent[find(i)] = find(first[k])
        else:
            first[k] = i
    for ti, pat in enumerate(sc.tie_groups):
        rx = re.compile(pat)
        seen: dict = {}
        for i, n in enumerate(layers):
            m = rx.search(n)
            if not m:
                continue
            k = m.group(1) if m.groups() else m.group(0)
            if k in seen:
                a, b = find(i), find(seen[k])
                parent[max(a, b)] = min(a, b)
            else:
                seen[k] = i
    return [find(i) for i in range(len(layers))]


def build_problem(costs_dir: str | Path, scenario: Scenario) -> Problem:
    cd = load_costs(costs_dir)
    meta, sc = cd.meta, scenario
    layers_df = cd.layers.sort_values("order").reset_index(drop=True)
    layer_names = [str(x) for x in layers_df["layer"]]
    lidx = {n: i for i, n in enumerate(layer_names)}
    if sc.tile is not None and meta.get("tile") is not None and list(meta["tile"]) != list(sc.tile):
        raise UserError(f"scenario tile {sc.tile} differs from the cost tables' tile {meta['tile']}; "
                        f"rerun `halo-opt costs` with that tile size or drop `tile` from the scenario")
    cbs = cd.codebooks
    cb_names = [c["name"] for c in cbs]
    lv_list = cd.levels
    lv_names = [x["name"] for x in lv_list]
    volt = np.array([x["voltage_v"] for x in lv_list], float)
    v0 = cd.v0
    nominal = cd.nominal_level()
    int4 = [c["name"] for c in cbs if len(c["codes"]) == 16 and np.all(np.diff(sorted(c["codes"])) == 1)]
    aliases = {"nominal": nominal} | ({"int4": int4[0]} if int4 else {})
    keep_c = resolve_names(sc.codebooks, cb_names, aliases, "codebook")
    keep_v = resolve_names(sc.levels, lv_names, {"nominal": nominal}, "level")

    tiles = cd.tiles
    T = len(tiles)
    tl = tiles["layer"].astype(str).map(lidx)
    if tl.isna().any():
        bad = sorted(set(tiles["layer"].astype(str)[tl.isna()]))
        raise UserError(f"tiles.parquet names layers missing from layers.parquet: {bad[:3]}; regenerate the costs")
    tile_layer = tl.to_numpy(np.int64)
    errs = cd.errors.set_index("tile").reindex(np.arange(T))
    err_all = errs[cb_names].to_numpy(np.float64)
    efj = np.array([c["energy_fj"] for c in cbs], float)
    macs = tiles["macs"].to_numpy(np.float64)
    en_all = macs[:, None] * efj[None, :] * 1e-15

    lat_df = cd.latency
    lat_layer = np.full((len(layer_names), len(lv_names)), np.nan)
    li = lat_df["layer"].astype(str).map(lidx)
    vi = lat_df["level"].astype(str).map({n: i for i, n in enumerate(lv_names)})
    if li.isna().any() or vi.isna().any():
        raise UserError("latency.parquet names unknown layers or levels; regenerate the costs")
    lat_layer[li.to_numpy(int), vi.to_numpy(int)] = lat_df["seconds"].to_numpy(float)
    if np.isnan(lat_layer).any():
        raise UserError("latency.parquet lacks some (layer, level) rows; regenerate the costs")
    compat_all = np.zeros((len(cb_names), len(lv_names)), bool)
    for ci, n in enumerate(cb_names):
        row = cd.compat.get(n, {})
        for vi_, m in enumerate(lv_names):
            compat_all[ci, vi_] = row.get(m) is not None

    # hardware-agnostic baseline (full at nominal) for weighted objectives
    full = cb_names.index(BASELINE_CODEBOOK) if BASELINE_CODEBOOK in cb_names else int(err_all.sum(0).argmin())
    vn = lv_names.index(nominal)
    leak_all = np.array([x.get("leak_power_w", 0.0) for x in lv_list], float)
    lat_base = float(lat_layer[:, vn].sum())
    en_base = float(en_all[:, full].sum() * (volt[vn] / v0) ** 2 + leak_all[vn] * lat_base)
    if sc.objective == "latency":
        wl, we = 1.0, 0.0
    elif sc.objective == "energy":
        wl, we = 0.0, 1.0
    else:
        wl = sc.weights.get("latency", 1.0) / max(lat_base, 1e-300)
        we = sc.weights.get("energy", 1.0) / max(en_base, 1e-300)

    tile_lat_all = None
    if sc.granularity == "fold":
        fold_tile = meta.get("fold_tile")
        if cd.tile_latency is None:
            want = f" --tile {fold_tile[0]}x{fold_tile[1]}" if fold_tile else ""
            raise UserError(f"granularity = \"fold\" needs per-fold latencies (tile_latency.parquet), which {cd.path} lacks: "
                            f"rerun `halo-opt costs`{want} on a systolic accelerator, with the tile = one fold of the array")
        tl = cd.tile_latency
        tlm = np.full((T, len(lv_names)), np.nan)
        tv = tl["level"].astype(str).map({n: i for i, n in enumerate(lv_names)})
        if tv.isna().any() or (tl["tile"] < 0).any() or (tl["tile"] >= T).any():
            raise UserError("tile_latency.parquet names unknown tiles or levels; regenerate the costs")
        tlm[tl["tile"].to_numpy(int), tv.to_numpy(int)] = tl["seconds"].to_numpy(float)
        if np.isnan(tlm).any():
            raise UserError("tile_latency.parquet lacks some (tile, level) rows; regenerate the costs")
        tile_lat_all = tlm
        sc = sc.with_overrides(granularity="layer", tie_groups=[])  # a domain per layer; tiles then pick levels
        lat_base = float(tlm[:, vn].sum())
        en_base = float(en_all[:, full].sum() * (volt[vn] / v0) ** 2 + leak_all[vn] * lat_base)
        if sc.objective == "weighted":
            wl = sc.weights.get("latency", 1.0) / max(lat_base, 1e-300)
            we = sc.weights.get("energy", 1.0) / max(en_base, 1e-300)

    # domains
    root = _domains(layer_names, sc)
    roots = sorted(set(root))  # root = first layer index of the domain → execution order
    dmap = {r: i for i, r in enumerate(roots)}
    layer_dom = np.array([dmap[r] for r in root], np.int64)
    L = len(roots)
    dom_layers = [[layer_names[i] for i in range(len(layer_names)) if layer_dom[i] == d] for d in range(L)]
    dom_names = [dl[0] if len(dl) == 1 else f"{dl[0]}+{len(dl) - 1}" for dl in dom_layers]
    lat = np.zeros((L, len(lv_names)))
    np.add.at(lat, layer_dom, lat_layer)

    err, en = err_all[:, keep_c], en_all[:, keep_c]
    normaliser = float(meta["normaliser"])
    layer_budget = None
    if sc.layer_budgets:
        tr = layers_df["tr_WHW"].to_numpy(float)
        layer_budget = np.full(len(layer_names), math.inf)
        for pat, eps in sc.layer_budgets.items():
            rx = re.compile(pat)
            for i, n in enumerate(layer_names):
                if rx.search(n):
                    layer_budget[i] = min(layer_budget[i], float(eps) * tr[i])
    if tile_lat_all is not None:  # tiles group only with identical latency rows too
        tl_keep = tile_lat_all[:, keep_v]
        tile_group, count, gd, gl, _, _ = aggregate(layer_dom[tile_layer], tile_layer, np.hstack([err, tl_keep]), en)
        first = np.zeros(len(count), np.int64)
        first[tile_group[::-1]] = np.arange(T)[::-1]
        ge, gE, g_tl = err[first], en[first], tl_keep[first]
        lat = np.zeros_like(lat)
    else:
        tile_group, count, gd, gl, ge, gE = aggregate(layer_dom[tile_layer], tile_layer, err, en)
        g_tl = None
    sw = meta.get("switch") or {}
    return Problem(
        count=count, group_domain=gd, group_layer=gl, err=ge, energy_dyn=gE,
        lat=lat[:, keep_v], voltage=volt[keep_v], v0=v0, leak_w=leak_all[keep_v],
        compat=compat_all[np.ix_(keep_c, keep_v)],
        normaliser=normaliser,
        energy_cap=math.inf if sc.energy_cap_j is None else float(sc.energy_cap_j),
        latency_cap=math.inf if sc.latency_cap_s is None else float(sc.latency_cap_s),
        max_levels=sc.max_levels, max_switches=sc.max_switches,
        switch_time_s=float(sw.get("time_s", 0.0)), switch_energy_j=float(sw.get("energy_j", 0.0)),
        w_latency=wl, w_energy=we, layer_budget=layer_budget, tile_group=tile_group,
        freq_hz=np.array([x["freq_hz"] for x in lv_list], float)[keep_v],
        codebook_names=[cb_names[i] for i in keep_c], level_names=[lv_names[i] for i in keep_v],
        domain_names=dom_names, layer_names=layer_names, domain_layers=dom_layers, tile_lat=g_tl,
    ).with_budget(sc.budget)
