"""RTN per plan with the cost stage's saved scales vs searching them again, side by side in one run.

``halo-opt costs --save-scales`` (``build_costs(save_scales=True)``) keeps every layer's chosen
row scales; RTN then takes them instead of repeating the cost stage's grid search. This script
calibrates a model, builds its cost tables once with the scales, copies the folder without
``scales.safetensors`` (the same tables, the same ``costs_sha256``), and times
:func:`halo_opt.execute.run.execute_plan` (RTN, no memo across plans: a one-shot ``halo-opt
execute``) on both for a few plans: best of ``--repeat``, the ratio, and whether codes and scales
are bitwise equal.

    OMP_NUM_THREADS=1 python benchmarks/bench_saved_scales.py --model minilm --out /tmp/saved --json benchmarks/results/exec/saved_scales_minilm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from halo_opt.calibration import calibrate, calibration_batch, load_model
from halo_opt.costfolder import SCALES_FILE
from halo_opt.costs import build_costs
from halo_opt.execute.inputs import load_costs
from halo_opt.execute.pipeline import hessian_fns
from halo_opt.execute.run import execute_plan
from halo_opt.paths import data_dir, scenario_file
from halo_opt.solve.build import build_problem
from halo_opt.solve.planner import plan
from halo_opt.solve.scenario import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--plans", default="balanced:0.001,balanced:0.01,performance:0.005,energy:0.02",
                    help="goal:budget pairs, planned with --solver")
    ap.add_argument("--solver", default="greedy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    ad = load_model(a.model)
    calib, saved, searched = a.out / "calib", a.out / "costs-saved", a.out / "costs-searched"
    if not (calib / "meta.json").is_file():
        calibrate(ad, calibration_batch(ad.tokenizer, None, 64, 128, 0, max_length=ad.max_length), calib, fisher=False, progress=False)
    if not (saved / "meta.json").is_file():
        build_costs(calib, data_dir() / "profiles" / "int8_signed_array_builtin", saved, "tpu_like", (a.tile, a.tile), model=ad,
                    progress=False, save_scales=True)
    if not (searched / "meta.json").is_file():
        shutil.copytree(saved, searched)
        (searched / SCALES_FILE).unlink()
    W = {l.name: l.weight().detach() for l in ad.linears}
    H = hessian_fns(calib, ad)[0]
    rows = []
    for spec in a.plans.split(","):
        goal, budget = spec.split(":")
        sc = load_scenario(scenario_file(goal)).with_overrides(budget=float(budget))
        p = plan(build_problem(saved, sc), a.solver, costs=saved, scenario=sc.to_dict()).to_dict()
        t, ex = {}, {}
        for tag, folder in (("searched", searched), ("saved", saved)):
            c = load_costs(folder)
            best = float("inf")
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                ex[tag] = execute_plan(p, c, W, H, "rtn")
                best = min(best, time.perf_counter() - t0)
            t[tag] = best
        same = all(torch.equal(ex["saved"].layers[n].q, ex["searched"].layers[n].q)
                   and torch.equal(ex["saved"].layers[n].scales, ex["searched"].layers[n].scales) for n in ex["saved"].layers)
        rows.append({"plan": spec, "searched_s": t["searched"], "saved_s": t["saved"], "ratio": t["searched"] / t["saved"],
                     "bitwise_equal": same})
        print(f"{spec:>22}: searched {t['searched']:.2f} s, saved scales {t['saved']:.2f} s = {t['searched'] / t['saved']:.2f}x, "
              f"codes and scales bitwise equal: {same}", flush=True)
    rec = {"model": a.model, "tile": a.tile, "solver": a.solver, "repeat": a.repeat, "rows": rows,
           "scales_file_mb": (saved / SCALES_FILE).stat().st_size / 1e6, "threads": torch.get_num_threads(),
           "cores": os.cpu_count(), "load": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(rec, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
