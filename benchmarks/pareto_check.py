"""Pareto check (issue 14): `halo-opt pareto` with cpsat and greedy on one scenario; cpsat must
have a plan at every budget and never be worse than greedy; every point must be a plan file
of these cost tables.

    python benchmarks/pareto_check.py --costs runs/demo/costs --scenario formulations/energy.toml \
        --points 12 --time-limit 30 --workers 2 --out runs/pareto-energy
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from halo_opt.cli import main as cli
from halo_opt.planfile import load_plan


def run(costs: Path, scenario: Path, points: int, time_limit: float, out: Path, workers: int = 1) -> int:
    t0 = time.perf_counter()
    try:
        cli(["pareto", "--scenario", str(scenario), "--costs", str(costs), "--solvers", "cpsat,greedy",
             "--points", str(points), "--time-limit", str(time_limit), "--out", str(out), "--workers", str(workers)])
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code)
    wall = time.perf_counter() - t0
    df = pd.read_parquet(out / "points.parquet")
    c = df[df["solver"] == "cpsat"].set_index("budget").sort_index()
    g = df[df["solver"] == "greedy"].set_index("budget").sort_index()
    print(f"{'budget':>10} {'cpsat status':>12} {'cpsat obj':>12} {'gap':>9} {'greedy obj':>12} {'cpsat/greedy':>12}")
    worse = 0
    for b in c.index:
        co, go = c.at[b, "objective"], g.at[b, "objective"]
        ratio = co / go if go == go and co == co else float("nan")
        worse += bool(ratio > 1 + 1e-9)
        print(f"{b:10.3e} {c.at[b, 'status']:>12} {co:12.5e} {c.at[b, 'gap']:9.1e} {go:12.5e} {ratio:12.6f}")
    for f in df["plan"].dropna():
        load_plan(out / f, costs)  # raises unless a valid plan file of these costs
    n_plans = int(c["objective"].notna().sum())
    print(f"cpsat plans: {n_plans}/{len(c)}; cpsat worse than greedy at {worse} budgets; "
          f"{int(df['plan'].notna().sum())} plan files valid; sweep wall {wall:.0f} s")
    return 0 if n_plans == len(c) and worse == 0 else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--costs", type=Path, required=True)
    ap.add_argument("--scenario", type=Path, default=Path("formulations/energy.toml"))
    ap.add_argument("--points", type=int, default=12)
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=Path("runs/pareto-check"))
    ap.add_argument("--workers", type=int, default=1, help="parallel processes of the sweep")
    a = ap.parse_args()
    sys.exit(run(a.costs, a.scenario, a.points, a.time_limit, a.out, a.workers))
