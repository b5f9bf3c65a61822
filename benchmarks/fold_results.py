"""Layer vs fold granularity on one or more cost folders: the physical bound and planned speedups.

For each cost folder (its workload and compute-bound share from ``meta.json``), at layer
granularity (``performance.toml``: K = 2, q/k/v and gate/up tied) and at fold granularity
(``performance_fold.toml``: K = 2, a level per tile): the physical bound (error budget ∞, exact),
and at each ``--eps`` the exact plan (cpsat, hinted) and the HALO baseline of that granularity
(``halo_layer`` / ``halo_fold``), as speedups over the full-grid nominal baseline priced at the
same granularity. Closed-loop rows (accuracy measured) come from ``halo-opt tune``
(benchmarks/fold.md).

    OMP_NUM_THREADS=1 python benchmarks/fold_results.py --costs runs/fold/costs-halo-prefill-b64 --eps 3e-4,1e-3
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from halo_opt.costfolder import load_costs
from halo_opt.paths import formulations_dir
from halo_opt.solve import solve_hinted
from halo_opt.solve.build import build_problem
from halo_opt.solve.problem import evaluate
from halo_opt.solve.scenario import load_scenario

SCEN = {"layer": ("performance", "halo_layer"), "fold": ("performance_fold", "halo_fold")}


def rows_for(costs: Path, eps: list[float], time_limit: float) -> list[dict]:
    meta = load_costs(costs).meta
    share = meta.get("compute_bound_share") or {}
    out = []
    for gran, (scen, halo) in SCEN.items():
        sc = load_scenario(formulations_dir() / f"{scen}.toml")
        base_p = build_problem(costs, load_scenario(formulations_dir() / "baseline_int8.toml").with_overrides(granularity=gran))
        base = evaluate(base_p, solve_hinted(base_p, "cpsat", time_limit=time_limit).assignment).latency
        for e, solver in [(math.inf, "cpsat")] + [(x, s) for x in eps for s in ("cpsat", halo)]:
            p = build_problem(costs, sc.with_overrides(budget=e))
            r = solve_hinted(p, solver, time_limit=time_limit)
            ev = evaluate(p, r.assignment) if r.has_plan else None
            out.append({"costs": str(costs), "workload": meta["workload"].get("name"), "clock": meta.get("clock"),
                        "compute_bound_share": share.get(gran), "granularity": gran, "eps": e, "solver": solver,
                        "status": r.status, "speedup": base / ev.latency if ev else None, "switches": ev.switches if ev else None,
                        "levels": ev.levels_used if ev else None, "error_rel": p.relative(ev.error) if ev else None,
                        "wall_s": r.wall_s, "tiles": p.n_tiles})
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--costs", nargs="+", type=Path, required=True)
    ap.add_argument("--eps", default="3e-4,1e-3")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None, help="JSON lines file for the rows")
    a = ap.parse_args()
    rows = [r for c in a.costs for r in rows_for(c, [float(x) for x in a.eps.split(",")], a.time_limit)]
    if a.out:
        a.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("| costs | workload | granularity | compute-bound share | ε | solver | speedup | switches | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['costs']).name} | {r['workload']} | {r['granularity']} | {r['compute_bound_share']:.2f} | {r['eps']:g} | "
              f"{r['solver']} | {r['speedup']:.3f}× | {r['switches']} | {r['status']} |" if r["speedup"] else f"| {r} |")


if __name__ == "__main__":
    main()
