"""`halo-opt plan` and `halo-opt pareto`: scenario + cost tables → plan.json / Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from . import app, emit

SCENARIO_HELP = "scenario: a shipped name (performance, performance_fold, energy, balanced, baseline_int8, baseline_int4) or a TOML path"


def _baseline(costs: Path, granularity: str = "layer") -> dict:
    """The full-grid (INT8 on an 8-bit MAC) baseline's predicted latency and energy (the one pricing, ``execute.validate.baseline_cost``)."""
    from ..execute.inputs import load_costs
    from ..execute.validate import baseline_cost

    c = load_costs(costs)
    return baseline_cost(c, "int8", granularity) | {"workload": (c.meta.get("workload") or {}).get("name"),
                                                   "compute_bound_share": (c.meta.get("compute_bound_share") or {}).get(granularity)}


def _load(scenario: Path, costs: Path, budget: Optional[float]):
    from ..paths import scenario_file
    from ..solve.build import build_problem
    from ..solve.scenario import load_scenario

    sc = load_scenario(scenario_file(scenario))
    if budget is not None:
        sc = sc.with_overrides(budget=budget)
    return sc, build_problem(costs, sc)


@app.command()
def plan(
    scenario: Path = typer.Option(..., "--scenario", help=SCENARIO_HELP),
    costs: Path = typer.Option(..., "--costs", help="cost-table folder from `halo-opt costs`"),
    solver: str = typer.Option("cpsat", "--solver", help="cpsat | milp | relax | lagrange | greedy | halo_layer | halo_fold (halo = halo_layer)"),
    out: Path = typer.Option(Path("plan.json"), "--out", help="plan file to write"),
    budget: Optional[float] = typer.Option(None, "--budget", help="relative error budget ε (overrides the scenario)"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="solver time limit, s (cpsat: deterministic units ≈ s of one core)"),
    workers: int = typer.Option(1, "--workers", help="solver threads (1: deterministic; more: CP-SAT's parallel portfolio, not deterministic)"),
    seed: int = typer.Option(0, "--seed", help="solver random seed"),
    as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object (for scripts)"),
) -> None:
    """Solve one scenario and write plan.json (same inputs and seed: the same bytes).

    Example: halo-opt plan --scenario performance --costs runs/costs --solver cpsat --out runs/plan.json
    """
    from ..solve import get_solver
    from ..solve.planner import plan as make_plan

    get_solver(solver)  # unknown solver: one line, before any work
    if time_limit <= 0 or workers < 1:
        raise UserError("--time-limit must be > 0 and --workers >= 1")
    sc, p = _load(scenario, costs, budget)
    pl = make_plan(p, solver, costs=costs, scenario=sc.to_dict(), time_limit=time_limit, workers=workers, seed=seed)
    pl.save(out)
    r = pl.result
    from ..report.style import versus
    from ..solve.problem import evaluate

    gran = "fold" if p.fold else "layer"
    ev, base = evaluate(p, r.assignment), _baseline(costs, gran)
    cbs = base["compute_bound_share"]
    where = f"workload {base['workload'] or '?'}, compute-bound share {cbs:.2f}" if cbs is not None else f"workload {base['workload'] or '?'}"
    unit = {"latency": " s", "energy": " J"}.get(sc.objective, " (× baseline, summed)")
    notes = "".join(f", {k} {r.info[k]}" for k in ("incumbent", "bound_from") if k in r.info)
    data = {"solver": solver, "status": r.status, "objective": r.objective, "objective_kind": sc.objective, "bound": r.bound,
            "granularity": gran, "workload": base["workload"], "compute_bound_share": cbs, "switches": ev.switches,
            "gap": r.gap, "wall_s": r.wall_s, "latency_s": ev.latency, "energy_j": ev.energy, "error_rel": p.relative(ev.error),
            "budget_rel": sc.budget, "speedup": base["latency_s"] / ev.latency, "energy_saving": 1 - ev.energy / base["energy_j"],
            "baseline": base, "plan": str(out)}
    emit(f"{solver} ({gran} granularity; {where}): {r.status}, {versus(ev.latency, ev.energy, base)}; error used ε {p.relative(ev.error):.3g} of {sc.budget:.3g}; "
         f"objective {r.objective:.6g}{unit}, bound {r.bound:.6g}, gap {r.gap:.2e} "
         f"({r.wall_s:.2f} s, {p.n_tiles} tiles in {p.G} groups, {p.L} domains{notes}) -> {out}", data, as_json)


@app.command()
def pareto(
    scenario: Path = typer.Option(..., "--scenario", help=SCENARIO_HELP),
    costs: Path = typer.Option(..., "--costs", help="cost-table folder from `halo-opt costs`"),
    solvers: str = typer.Option("cpsat,greedy,halo_layer,lagrange", "--solvers", help="comma-separated solver names"),
    points: int = typer.Option(12, "--points", help="number of budgets in the sweep"),
    out: Path = typer.Option(Path("pareto"), "--out", help="output folder (points.parquet, plans/, pareto.png)"),
    time_limit: float = typer.Option(30.0, "--time-limit", help="per-point solver time limit, s"),
    workers: int = typer.Option(1, "--workers", help="parallel processes (with --ray local: the local Ray instance's CPUs)"),
    seed: int = typer.Option(0, "--seed", help="solver random seed"),
    chunks: int = typer.Option(0, "--chunks", help="warm-started chains per solver (0: --workers); the points depend on it, "
                               "not on where the chains run"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run the chains on Ray: local (start one here), auto (the running "
                                      "cluster) or an address (HOST:6379, ray://HOST:10001); needs halo-opt[distributed]"),
    sweep_over: str = typer.Option("budget", "--sweep", help="budget (error ε) or energy_cap (J, at the scenario's budget)"),
    as_json: bool = typer.Option(False, "--json", help="print the points as one JSON object (for scripts)"),
) -> None:
    """ε-constraint sweep over the error budget (or the energy cap); writes a Pareto front.

    Every finished point is kept in OUT/points/ (one file each); a rerun with the same arguments resumes.

    Example: halo-opt pareto --scenario energy --costs runs/costs --solvers cpsat,lagrange,greedy --points 8 --out runs/pareto
    On a Ray cluster: halo-opt pareto ... --chunks 16 --ray auto   (after `ray start --head`)
    """
    from ..solve import get_solver
    from ..solve.pareto import sweep, write

    names = [s.strip() for s in solvers.split(",") if s.strip()]
    for s in names:
        get_solver(s)
    if points < 2 or workers < 1 or time_limit <= 0 or chunks < 0:
        raise UserError("--points must be >= 2, --workers >= 1, --chunks >= 0 and --time-limit > 0")
    from ..distributed import check_engine

    check_engine(ray)
    sc, p = _load(scenario, costs, None)
    from ..report.pareto_plot import render_pareto
    from ..report.style import speedup, saving

    df, plans = sweep(p, names, points=points, param=sweep_over, time_limit=time_limit, workers=workers, seed=seed,
                      progress=not as_json, costs=costs, scenario=sc.to_dict(), chunks=chunks or None, ray=ray,
                      store=out / "points")
    base = _baseline(costs, "fold" if p.fold else "layer")
    write(out, df, plans, p, param=sweep_over, meta={"scenario": sc.name, "objective": sc.objective, "costs": str(costs),
                                                     "baseline": base})
    render_pareto(out)
    df = df.assign(speedup=base["latency_s"] / df["latency_s"], energy_saving=1 - df["energy_j"] / base["energy_j"])
    ok = df[df["objective"].notna()]
    best = ok.loc[(ok["speedup"] if sc.objective == "latency" else ok["energy_saving"]).idxmax()] if len(ok) else None
    line = f"{len(ok)}/{len(df)} points solved, {int((~df['dominated']).sum())} non-dominated"
    if best is not None:
        line += (f"; best {best['solver']} at ε {best['error_rel']:.3g}: {speedup(best['speedup'])} speed, "
                 f"{saving(best['energy_saving'])} vs the full-grid baseline ({'fold' if p.fold else 'layer'} granularity, "
                 f"workload {base['workload'] or '?'}"
                 + (f", compute-bound share {base['compute_bound_share']:.2f})" if base["compute_bound_share"] is not None else ")"))
    emit(f"{line} -> {out} (pareto.png, plans/*.json)", {"points": df.to_dict("records"),
                                                         "baseline": base, "out": str(out)}, as_json)
