"""FP codebooks on a real model: MX block-scale rule (Hessian search vs the OCP rule) and per-row scales.

For every planned layer of a calibration (Hessians damped as the cost stage does), the relative
layer-local error ``Σ_tiles e_gc / tr(W H Wᵀ)`` of a few FP codebooks under three scale rules:
``mx-search`` (E8M0 per 32 columns, OCP rule ×{1, 2, ½} by block Hessian error), ``mx-ocp`` (the
OCP rule alone) and ``row`` (one scale per row and tile, the integer path's grid search), plus
the INT4/INT8 grids as reference. Writes ``<out>/fp_scales.json`` and ``<out>/fp_scales.md``.

    PYTHONPATH=. python benchmarks/bench_fp_scales.py --calib runs/tuned-minilm-fp8/calib --model minilm --out benchmarks/results/fp
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from halo_opt.calibration.hessian import damped, load_calibration, load_hessian
from halo_opt.calibration.models import load_model
from halo_opt.costs import layer_tile_errors
from halo_opt.formats import get_format
from halo_opt.quantize import grid_of


def books() -> dict[str, dict]:
    fp4, fp8 = get_format("fp4_e2m1").codes().tolist(), get_format("fp8_e4m3").codes().tolist()
    return {"fp4_e2m1": {"codes": fp4, "format": "fp4_e2m1"}, "fp8_e4m3": {"codes": fp8, "format": "fp8_e4m3"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    _, layers = load_calibration(a.calib)
    ad = load_model(a.model, layers=[l["name"] for l in layers])
    cols = {}
    for name, b in books().items():
        for rule in ("mx-search", "mx-ocp", "row"):
            cols[f"{name} {rule}"] = (grid_of(b, scale="mx" if rule.startswith("mx") else "row"), rule.removeprefix("mx-"))
    cols["int8 row"] = (grid_of(list(range(-128, 128))), "row")
    cols["int4 row"] = (grid_of(list(range(-8, 8))), "row")
    tot = {k: 0.0 for k in cols}
    trace = 0.0
    per_layer = []
    for lay in layers:
        W = ad.layer(lay["name"]).weight().double()
        H = damped(load_hessian(a.calib, lay["name"])["H"], a.damp, lay["name"]).H
        tr = float(((W @ H) * W).sum())
        row = {"layer": lay["name"], "tr_WHW": tr}
        for k, (g, rule) in cols.items():
            e, _ = layer_tile_errors(W, H, (a.tile, a.tile), [g], fast=True, mx_rule=rule if rule != "row" else "search")
            row[k] = float(e.sum())
            tot[k] += row[k]
        trace += tr
        per_layer.append(row)
    rel = {k: v / trace for k, v in tot.items()}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "fp_scales.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "relative": rel,
                                                        "layers": per_layer, "wall_s": time.perf_counter() - t0}, indent=1))
    lines = ["| codebook | scale rule | Σ e / Σ tr(W H Wᵀ) | vs mx-search |", "|---|---|---|---|"]
    for k, v in rel.items():
        fmt, rule = k.split(" ")
        ref = rel.get(f"{fmt} mx-search")
        lines.append(f"| {fmt} | {rule} | {v:.3e} | {v / ref:.3f} |" if ref else f"| {fmt} | {rule} | {v:.3e} | – |")
    (a.out / "fp_scales.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{len(layers)} layers, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
