"""Pareto fronts by ε-constraint sweeps (error budget, or energy cap), warm-started, in parallel.

For each solver the sweep values are sorted so that every point relaxes the previous one
(ascending budget / cap): the previous plan stays feasible and is handed in as ``hint``.
The values are split into ``workers`` contiguous chunks run in separate processes (each
chunk warm-starts along itself). Every point is one run of the planner stage
(:func:`.planner.plan`: cpsat with the Lagrangian hint) and keeps its plan file
(``plans/<solver>-<k>.json``, contract §6, runnable with ``halo-opt execute``); a point is *dominated* if another point (any
solver) has no more error (energy, for an energy-cap sweep) and no more objective, one of
them strictly less.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import UserError
from .problem import Problem, evaluate


def bound_error(p: Problem, time_limit: float = 10.0) -> float:
    """Absolute error of a plan that is optimal with no error budget (the physical bound, from
    ``lagrange``; for a latency-only objective the least-error codebooks its levels allow, which
    keeps the latency). Every budget at or above it has the same optimum. inf if none found."""
    from . import get_solver

    r = get_solver("lagrange")(p.replace(budget=math.inf), time_limit=time_limit)
    if not r.has_plan:
        return math.inf
    if p.w_energy == 0:
        ok = p.compat[:, r.assignment.level[p.group_domain]].T  # [G, C]: allowed at the group's level
        return float((p.count * np.where(ok, p.err, np.inf).min(1)).sum())
    return float(evaluate(p.replace(budget=math.inf), r.assignment).error)


def default_budgets(p: Problem, points: int, time_limit: float = 10.0) -> np.ndarray:
    """Relative budgets, geometric from the least achievable error to the error at which the
    budget stops binding: every tile on its highest-error codebook, or :func:`bound_error` if
    smaller (no point is spent on budgets that cannot change the optimum)."""
    from .infeasible import min_error

    lo = min_error(p)
    if not math.isfinite(lo):
        raise UserError("no plan satisfies the level constraints; allow more levels or codebooks")
    hi = min(float((p.count * np.where(p.compat.any(1)[None, :], p.err, 0).max(1)).sum()), bound_error(p, time_limit))
    lo = max(lo * (1 + 1e-6), 1e-300)
    hi = max(hi * 1.001, lo * 1.001)  # just above: conservative integer scaling (cpsat) must not cut the top point
    return np.array([p.relative(x) for x in np.geomspace(lo, hi, points)])


def default_energy_caps(p: Problem, points: int) -> np.ndarray:
    """Energy caps (J), geometric from the least achievable energy (budget ignored) to an upper
    bound on any plan's energy (every tile at its costliest codebook and level)."""
    from .infeasible import min_energy

    lo = min_energy(p)
    if not math.isfinite(lo):
        raise UserError("no plan satisfies the level constraints; allow more levels or codebooks")
    hi = float((p.count * p.energy_dyn.max(1)).sum() * p.sigma.max() + (p.lat * p.leak_w[None, :]).max(1).sum()
               + max(p.L - 1, 0) * p.switch_energy_j)
    return np.geomspace(lo * (1 + 1e-6), max(hi, lo * 1.001), points)


def _run_chunk(args):
    p, solver, param, values, time_limit, seed, costs, scenario = args
    from .planner import plan

    hint, rows = None, []
    for val in values:
        if param == "budget":
            q, sc = p.with_budget(val), dict(scenario, budget=float(val))
        else:
            q, sc = p.replace(energy_cap=float(val)), dict(scenario, energy_cap_j=float(val))
        pl = plan(q, solver, costs=costs, scenario=sc, time_limit=time_limit, workers=1, seed=seed, hint=hint, strict=False)
        r = pl.result
        row = {"solver": solver, param: float(val), "status": r.status, "objective": r.objective,
               "bound": r.bound, "gap": r.gap, "wall_s": r.wall_s,
               "latency_s": math.nan, "energy_j": math.nan, "error": math.nan, "error_rel": math.nan}
        if pl.ok:
            ev = evaluate(q, r.assignment)
            row.update(latency_s=ev.latency, energy_j=ev.energy, error=ev.error, error_rel=q.relative(ev.error))
            hint = r.assignment
        rows.append((row, pl.to_dict() if pl.file is not None else None))
    return rows


def sweep(p: Problem, solvers: list[str], points: int = 12, values=None, param: str = "budget",
          time_limit: float = 30.0, workers: int = 1, seed: int = 0, progress: bool = False, *,
          costs: str | Path | None = None, scenario: dict | None = None):
    """Return (DataFrame of points, list of plan dicts (contract §6; None without a plan or
    without ``costs``), row-aligned). Each point is :func:`.planner.plan` (cpsat with the
    Lagrangian hint), warm-started from the previous point's plan."""
    import pandas as pd

    from . import get_solver

    for s in solvers:
        get_solver(s)
    if param not in ("budget", "energy_cap"):
        raise UserError(f"unknown sweep parameter {param!r}; use budget or energy_cap")
    if values is None:
        values = default_budgets(p, points, time_limit) if param == "budget" else default_energy_caps(p, points)
    values = np.sort(np.asarray(values, float))
    n_chunks = max(1, min(int(workers), len(values)))
    sc = dict(scenario or {})
    tasks = [(p, s, param, chunk, time_limit, seed, None if costs is None else str(costs), sc) for s in solvers
             for chunk in np.array_split(values, n_chunks) if len(chunk)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as ex:
            outs = list(_progress(ex.map(_run_chunk, tasks), len(tasks), progress))
    else:
        outs = [_run_chunk(t) for t in _progress(tasks, len(tasks), progress)]
    rows = [r for out in outs for r in out]
    df = pd.DataFrame([r for r, _ in rows])
    plans = [pl for _, pl in rows]
    x = df["error_rel"] if param == "budget" else df["energy_j"]
    df["dominated"] = dominated(x.to_numpy(), df["objective"].to_numpy())
    return df, plans


def _progress(it, total, on):
    from ..progress import track

    yield from track(it, "pareto sweep (solver x budget chunks)", on, total=total)


def dominated(err: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """[n] bool: another point has ≤ error and ≤ objective, one strictly (NaN points: dominated)."""
    ok = np.isfinite(err) & np.isfinite(obj)
    le = (err[None, :] <= err[:, None]) & (obj[None, :] <= obj[:, None])
    lt = (err[None, :] < err[:, None]) | (obj[None, :] < obj[:, None])
    d = (le & lt & ok[None, :]).any(1)
    return d | ~ok


def write(out_dir: str | Path, df, plans, p: Problem, param: str = "budget", meta: dict | None = None) -> Path:
    """``points.parquet``, ``plans/<solver>-<k>.json`` (plan files, contract §6: each runs with
    ``halo-opt execute``) and ``pareto.json`` (``param`` and ``meta``, e.g. the scenario's name and
    objective) in ``out_dir`` (atomic). The figure, ``pareto.png``, is drawn by
    ``halo_opt.report.pareto_plot.render_pareto``."""
    from ..artifacts import atomic_path, write_json
    from ..planfile import save_plan

    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        (tmp / "plans").mkdir()
        names = []
        for i, (row, pl) in enumerate(zip(df.to_dict("records"), plans)):
            if pl is None:
                names.append(None)
                continue
            n = f"plans/{row['solver']}-{i:03d}.json"
            save_plan(tmp / n, pl)
            names.append(n)
        df = df.assign(plan=names)
        df.to_parquet(tmp / "points.parquet", index=False)
        write_json(tmp / "pareto.json", {"param": param, "normaliser": p.normaliser, **(meta or {})})
    return out_dir
