"""Planner scale benchmark: synthetic LLaMA-2-shaped cost tables → wall time and gap per solver.

    python benchmarks/bench_solve.py --models medium,llama2-7b --out /tmp/bench_solve.json
    python benchmarks/bench_solve.py --models llama2-70b --solvers lagrange,greedy,halo_layer,cpsat

Cost tables come from :func:`halo_opt.solve.synthetic.write_costs` (lognormal errors, 8
codebooks, 5 DVFS levels, roofline latencies; 128×128 tiles, 2048 tokens per pass); scenarios
are the shipped formulations/{performance,energy,balanced}.toml. Gap of a solver = (its
objective − best valid bound from any solver) / its objective. Exact solvers (cpsat, milp)
are skipped when their model exceeds --max-vars variables (recorded as "skipped").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from halo_opt.paths import formulations_dir
from halo_opt.solve import get_solver
from halo_opt.solve.build import build_problem
from halo_opt.solve.model import model_size
from halo_opt.solve.scenario import load_scenario
from halo_opt.solve.synthetic import MODELS, write_costs

MODELS["medium"] = (2, MODELS["llama2-7b"][1])  # 2 LLaMA-2-7B blocks (24.7k tiles)
MODELS["small"] = (4, [(n, o // 8, i // 8) for n, o, i in MODELS["llama2-7b"][1]])  # LLaMA-2-7B/8 widths, 4 blocks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="small,medium,llama2-7b")
    ap.add_argument("--scenarios", default="performance,energy,balanced")
    ap.add_argument("--solvers", default="lagrange,greedy,halo_layer,cpsat,milp")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-vars", type=int, default=300_000)
    ap.add_argument("--cache", default="/tmp/halo_bench_costs")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    for model in a.models.split(","):
        d = Path(a.cache) / model
        if not (d / "meta.json").is_file():
            t = time.perf_counter()
            write_costs(d, model, n_codebooks=8, n_levels=5, tokens=2048, seed=0)
            print(f"# wrote {model} costs in {time.perf_counter() - t:.1f} s", flush=True)
        for scen in a.scenarios.split(","):
            t = time.perf_counter()
            p = build_problem(d, load_scenario(formulations_dir() / f"{scen}.toml"))
            t_build = time.perf_counter() - t
            res = {}
            for s in a.solvers.split(","):
                if s in ("cpsat", "milp", "relax"):
                    n = model_size(p)
                    if n > a.max_vars:
                        res[s] = {"status": f"skipped ({n} vars)"}
                        continue
                hint = res.get("lagrange", {}).get("_a") if s in ("cpsat", "milp") else None
                r = get_solver(s)(p, time_limit=a.time_limit, workers=a.workers, seed=0, hint=hint)
                res[s] = {"status": r.status, "objective": r.objective, "bound": r.bound, "wall_s": r.wall_s, "_a": r.assignment}
                print(f"{model:11s} {scen:11s} {s:9s} {r.status:9s} obj={r.objective:.6g} bound={r.bound:.6g} "
                      f"own_gap={r.gap:.2e} wall={r.wall_s:.1f}s", flush=True)
            best_bound = max((v.get("bound", -math.inf) for v in res.values()), default=-math.inf)
            for s, v in res.items():
                v.pop("_a", None)
                obj = v.get("objective", math.nan)
                gap = (obj - best_bound) / obj if math.isfinite(obj) and math.isfinite(best_bound) else math.nan
                rows.append({"model": model, "scenario": scen, "solver": s, "tiles": p.n_tiles, "groups": p.G,
                             "domains": p.L, "levels": p.V, "codebooks": p.C, "build_s": t_build, "gap": gap, **v})
    info = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "args": vars(a), "rows": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(info, indent=1, default=float))
    print("\n| model | scenario | tiles | solver | status | wall s | gap vs best bound |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        w = f"{r['wall_s']:.1f}" if "wall_s" in r else "–"
        g = f"{r['gap'] * 100:.3f}%" if isinstance(r.get("gap"), float) and math.isfinite(r["gap"]) else "–"
        print(f"| {r['model']} | {r['scenario']} | {r['tiles']} | {r['solver']} | {r['status']} | {w} | {g} |")


if __name__ == "__main__":
    main()
