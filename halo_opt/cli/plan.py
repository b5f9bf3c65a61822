"""`halo-opt plan` and `halo-opt pareto`: scenario + cost tables → plan.json / Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from . import app


def _load(scenario: Path, costs: Path, budget: Optional[float]):
    from ..solve.build import build_problem
    from ..solve.scenario import load_scenario

    sc = load_scenario(scenario)
    if budget is not None:
        sc = sc.with_overrides(budget=budget)
    return sc, build_problem(costs, sc)


@app.command()
def plan(
    scenario: Path = typer.Option(..., "--scenario", help="scenario TOML (see formulations/)"),
    costs: Path = typer.Option(..., "--costs", help="cost-table folder from `halo-opt costs`"),
    solver: str = typer.Option("cpsat", "--solver", help="cpsat | milp | relax | lagrange | greedy | halo"),
    out: Path = typer.Option(Path("plan.json"), "--out", help="plan file to write"),
    budget: Optional[float] = typer.Option(None, "--budget", help="relative error budget ε (overrides the scenario)"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="solver time limit, s (cpsat: deterministic units ≈ s of one core)"),
    workers: int = typer.Option(1, "--workers", help="solver threads (1: deterministic; more: CP-SAT's parallel portfolio, not deterministic)"),
    seed: int = typer.Option(0, "--seed", help="solver random seed"),
) -> None:
    """Solve one scenario and write plan.json (same inputs and seed: the same bytes)."""
    from ..solve import get_solver
    from ..solve.planner import plan as make_plan

    get_solver(solver)  # unknown solver: one line, before any work
    if time_limit <= 0 or workers < 1:
        raise UserError("--time-limit must be > 0 and --workers >= 1")
    sc, p = _load(scenario, costs, budget)
    pl = make_plan(p, solver, costs=costs, scenario=sc.to_dict(), time_limit=time_limit, workers=workers, seed=seed)
    pl.save(out)
    r = pl.result
    notes = "".join(f", {k} {r.info[k]}" for k in ("incumbent", "bound_from") if k in r.info)
    typer.echo(f"{solver}: {r.status} objective {r.objective:.6g} bound {r.bound:.6g} gap {r.gap:.2e} "
               f"({r.wall_s:.2f} s, {p.n_tiles} tiles in {p.G} groups, {p.L} domains{notes}) -> {out}")


@app.command()
def pareto(
    scenario: Path = typer.Option(..., "--scenario", help="scenario TOML (see formulations/)"),
    costs: Path = typer.Option(..., "--costs", help="cost-table folder from `halo-opt costs`"),
    solvers: str = typer.Option("cpsat,greedy,halo,lagrange", "--solvers", help="comma-separated solver names"),
    points: int = typer.Option(12, "--points", help="number of budgets in the sweep"),
    out: Path = typer.Option(Path("pareto"), "--out", help="output folder (points.parquet, plans/, pareto.png)"),
    time_limit: float = typer.Option(30.0, "--time-limit", help="per-point solver time limit, s"),
    workers: int = typer.Option(1, "--workers", help="parallel processes"),
    seed: int = typer.Option(0, "--seed", help="solver random seed"),
    sweep_over: str = typer.Option("budget", "--sweep", help="budget (error ε) or energy_cap (J, at the scenario's budget)"),
) -> None:
    """ε-constraint sweep over the error budget (or the energy cap); writes a Pareto front."""
    from ..solve import get_solver
    from ..solve.pareto import sweep, write

    names = [s.strip() for s in solvers.split(",") if s.strip()]
    for s in names:
        get_solver(s)
    if points < 2 or workers < 1 or time_limit <= 0:
        raise UserError("--points must be >= 2, --workers >= 1 and --time-limit > 0")
    sc, p = _load(scenario, costs, None)
    df, plans = sweep(p, names, points=points, param=sweep_over, time_limit=time_limit, workers=workers, seed=seed,
                      progress=True, costs=costs, scenario=sc.to_dict())
    ylabel = {"latency": "latency per pass (s)", "energy": "energy per pass (J)"}.get(sc.objective, "weighted objective (× baseline)")
    write(out, df, plans, p, ylabel, param=sweep_over)
    n_ok = int(df["objective"].notna().sum())
    typer.echo(f"{n_ok}/{len(df)} points solved, {int((~df['dominated']).sum())} non-dominated -> {out}")
