"""Full float64 Hessians vs float32 diagonal blocks: disk, and how many cost-table decisions change.

Calibrates MiniLM once with full Hessians (``layout="full"``), converts the folder to float32
blocks (:func:`halo_opt.calibration.hessian.convert_calibration`, block 128), builds the cost
tables from both (tile 64, the shipped built-in array profile, chosen scales kept) and counts

* chosen scales that differ (one per codebook × output row × column block: the scale search's decisions);
* tiles whose codebook order by error differs (what every solver ranks);
* relative difference of the errors and of the normaliser;
* plans (lagrange, greedy, cpsat) at a few budgets whose per-tile codebooks differ.

    OMP_NUM_THREADS=1 python benchmarks/bench_hessian_store.py --out runs/hstore
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from halo_opt.calibration import calibrate, calibration_batch, load_model
from halo_opt.calibration.hessian import convert_calibration
from halo_opt.costs import build_costs
from halo_opt.paths import data_dir, formulations_dir
from halo_opt.solve.build import build_problem
from halo_opt.solve.planner import plan
from halo_opt.solve.scenario import load_scenario


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--solvers", default="lagrange,greedy,cpsat")
    a = ap.parse_args()
    out = a.out
    prof = data_dir() / "profiles" / "int8_signed_array_builtin"
    ad = load_model("minilm")
    t0 = time.perf_counter()
    if not (out / "calib-full" / "meta.json").is_file():
        tb = calibration_batch(ad.tokenizer, None, a.sequences, a.seq_len, 0, max_length=ad.max_length)
        calibrate(ad, tb, out / "calib-full", layout="full", fisher=False, progress=False)
    if not (out / "calib-blocks" / "meta.json").is_file():
        convert_calibration(out / "calib-full", out / "calib-blocks", ad, 128, "float32")
    t_cal = time.perf_counter() - t0
    for k in ("full", "blocks"):
        if not (out / f"costs-{k}" / "meta.json").is_file():
            build_costs(out / f"calib-{k}", prof, out / f"costs-{k}", "tpu_like", (a.tile, a.tile), model=ad, progress=False,
                        save_scales=True)
    ef, eb = (pd.read_parquet(out / f"costs-{k}" / "errors.parquet").set_index("tile") for k in ("full", "blocks"))
    sf, sb = (load_file(str(out / f"costs-{k}" / "scales.safetensors")) for k in ("full", "blocks"))
    n_scales = sum(v.numel() for v in sf.values())
    d_scales = sum(int((sf[n] != sb[n]).sum()) for n in sf)
    rank_f, rank_b = np.argsort(ef.to_numpy(), 1, kind="stable"), np.argsort(eb.to_numpy(), 1, kind="stable")
    rel = np.abs(eb.to_numpy() - ef.to_numpy()) / np.maximum(np.abs(ef.to_numpy()), 1e-300)
    mf, mb = (json.loads((out / f"costs-{k}" / "meta.json").read_text()) for k in ("full", "blocks"))
    plans = []
    for goal in ("performance", "energy"):
        for budget in (1e-3, 1e-2, 5e-2):
            sc = load_scenario(formulations_dir() / f"{goal}.toml").with_overrides(budget=budget)
            for solver in a.solvers.split(","):
                tc = []
                for k in ("full", "blocks"):
                    c = out / f"costs-{k}"
                    pl = plan(build_problem(c, sc), solver, costs=c, scenario=sc.to_dict(), time_limit=20, strict=False)
                    tc.append(pl.to_dict()["tile_codebook"] if pl.file is not None else None)
                diff = None if None in tc else int(sum(x != y for x, y in zip(*tc)))
                plans.append({"goal": goal, "budget": budget, "solver": solver, "tiles": len(ef), "tiles_changed": diff})
    res = {"machine": os.uname().nodename, "load": os.getloadavg(), "tokens": a.sequences * a.seq_len, "tile": a.tile,
           "calib_s": t_cal,
           "disk_bytes": {"hessians_full_float64": du(out / "calib-full" / "hessians"),
                          "hessians_blocks_float32": du(out / "calib-blocks" / "hessians")},
           "scales": {"total": n_scales, "changed": d_scales},
           "tiles": len(ef), "codebooks": ef.shape[1],
           "tiles_rank_changed": int((rank_f != rank_b).any(1).sum()),
           "error_rel_diff_max": float(rel.max()), "error_rel_diff_median": float(np.median(rel)),
           "normaliser_rel_diff": abs(mb["normaliser"] - mf["normaliser"]) / mf["normaliser"], "plans": plans}
    (out / "hessian_store.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    main()
