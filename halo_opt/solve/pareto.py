"""Pareto fronts by ε-constraint sweeps (error budget, or energy cap), warm-started, in parallel.

For each solver the sweep values are sorted so that every point relaxes the previous one
(ascending budget / cap): the previous plan stays feasible and is handed in as ``hint``.
The values are split into ``chunks`` contiguous chains (default ``workers``), each a job of
:func:`halo_opt.distributed.run_jobs` (serial, local processes or Ray; each chain warm-starts
along itself, so the points depend on the chains, not on where they ran); every finished point
is kept in a store and a rerun resumes. Every point is one run of the planner stage
(:func:`.planner.plan`: cpsat with the Lagrangian hint) and keeps its plan file
(``plans/<solver>-<k>.json``, contract §6, runnable with ``halo-opt execute``); a point is *dominated* if another point (any
solver) has no more error (energy, for an energy-cap sweep) and no more objective, one of
them strictly less.
"""

from __future__ import annotations

import math
import shutil
from collections import OrderedDict
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


def _chain(solver: str, param: str, values: list[float], keys: list[str], time_limit: float, seed: int, store: str,
           costs: str | None, scenario: dict, problem: Problem | None = None) -> None:
    """One warm-started chain of a sweep (a job of :func:`halo_opt.distributed.run_jobs`): each
    value relaxes the previous one, whose plan is the next point's hint. Every finished point is
    written to ``store`` as ``{"row", "plan", "wall_s"}``; finished points are skipped (their plan
    is still the next hint, rebuilt exactly from the plan file). ``problem`` (in-process only) or
    the problem built from ``costs`` + ``scenario``."""
    from ..distributed import Store
    from .planner import plan

    st = Store(store)
    if problem is None:
        problem = built_problem(costs, scenario)
    p, hint = problem, None
    for val, key in zip(values, keys):
        if param == "budget":
            q, sc = p.with_budget(val), dict(scenario, budget=float(val))
        else:
            q, sc = p.replace(energy_cap=float(val)), dict(scenario, energy_cap_j=float(val))
        rec = st.get(key)
        if rec is not None:
            if rec["plan"] is not None:
                hint = assignment_from_plan(q, rec["plan"])
            elif rec["row"]["status"] in ("optimal", "feasible") and "assignment" in rec:
                hint = _assignment(rec["assignment"])
            continue
        pl = plan(q, solver, costs=costs, scenario=sc, time_limit=time_limit, workers=1, seed=seed, hint=hint, strict=False)
        r = pl.result
        row = {"solver": solver, param: float(val), "status": r.status, "objective": r.objective,
               "bound": r.bound, "gap": r.gap, "wall_s": r.wall_s,
               "latency_s": math.nan, "energy_j": math.nan, "error": math.nan, "error_rel": math.nan}
        rec = {"row": row, "plan": pl.to_dict() if pl.file is not None else None, "wall_s": r.wall_s}
        if pl.ok:
            ev = evaluate(q, r.assignment)
            row.update(latency_s=ev.latency, energy_j=ev.energy, error=ev.error, error_rel=q.relative(ev.error))
            hint = r.assignment
            if pl.file is None:  # no cost folder: keep the hint for a resumed chain
                rec["assignment"] = {"counts": r.assignment.counts.tolist(), "level": r.assignment.level.tolist()}
        st.put(key, rec)


#: Problems built in this process (a Ray worker runs several chains of one sweep), newest last.
_PROBLEMS: OrderedDict = OrderedDict()
PROBLEMS_KEPT = 2


def built_problem(costs: str | Path, scenario: dict) -> Problem:
    """``build_problem(costs, from_dict(scenario))``, memoised per process (at most
    :data:`PROBLEMS_KEPT`): the chains of a sweep that land on the same worker build it once. Keyed by
    the cost folder (path, ``meta.json`` SHA-256, its files' sizes and mtimes) and the scenario; the
    kept problem's arrays are read-only, so a job cannot change what the next one gets."""
    import json

    from ..artifacts import folder_stamp
    from .build import build_problem
    from .scenario import from_dict

    key = (str(Path(costs).resolve()), _sha(costs), folder_stamp(costs), json.dumps(scenario, sort_keys=True, default=str))
    p = _PROBLEMS.get(key)
    if p is None:
        p = build_problem(costs, from_dict(scenario))
        for v in vars(p).values():
            if isinstance(v, np.ndarray):
                v.flags.writeable = False
        _PROBLEMS[key] = p
        while len(_PROBLEMS) > PROBLEMS_KEPT:
            _PROBLEMS.popitem(last=False)
    _PROBLEMS.move_to_end(key)
    return p


def _assignment(d: dict):
    from .problem import Assignment

    return Assignment(np.asarray(d["counts"]), np.asarray(d["level"]))


def assignment_from_plan(p: Problem, plan: dict):
    """The :class:`Assignment` a plan file (contract §6) records for problem ``p``: tiles per
    (group, codebook) and each domain's level — exactly the solve's assignment."""
    from .problem import Assignment

    cb = {n: i for i, n in enumerate(p.codebook_names)}
    lv = {n: i for i, n in enumerate(p.level_names)}
    tg = p.tile_group if p.tile_group is not None else np.arange(p.G)
    c = np.array([cb[n] for n in plan["tile_codebook"]], dtype=np.int64)
    counts = np.zeros((p.G, p.C), dtype=np.int64)
    np.add.at(counts, (np.asarray(tg), c), 1)
    dom = {d["domain"]: lv[d["level"]] for d in plan["domains"]}
    return Assignment(counts, np.array([dom[n] for n in p.domain_names], dtype=np.int64))


def sweep(p: Problem, solvers: list[str], points: int = 12, values=None, param: str = "budget",
          time_limit: float = 30.0, workers: int = 1, seed: int = 0, progress: bool = False, *,
          costs: str | Path | None = None, scenario: dict | None = None, chunks: int | None = None,
          ray: str | None = None, store: str | Path | None = None):
    """Return (DataFrame of points, list of plan dicts (contract §6; None without a plan or
    without ``costs``), row-aligned). Each point is :func:`.planner.plan` (cpsat with the
    Lagrangian hint), warm-started from the previous point of its chain: per solver the sorted
    values are split into ``chunks`` contiguous chains (default ``workers``). The chains run
    through :func:`halo_opt.distributed.run_jobs`: serially, in ``workers`` local processes, or on
    Ray (``ray``: ``local`` | ``auto`` | an address; needs ``costs`` and ``scenario``, from
    which each task builds the problem). The result depends on the chains, not on where they
    ran. ``store``: a folder keeping one file per finished point; a rerun resumes from it."""
    import tempfile

    import pandas as pd

    from ..distributed import Job, Store, check_engine, run_jobs
    from . import get_solver

    for s in solvers:
        get_solver(s)
    if param not in ("budget", "energy_cap"):
        raise UserError(f"unknown sweep parameter {param!r}; use budget or energy_cap")
    check_engine(ray, workers)
    if ray is not None and (costs is None or scenario is None):
        raise UserError("a sweep on Ray needs the cost folder and the scenario (tasks build the problem from them)")
    if values is None:
        values = default_budgets(p, points, time_limit) if param == "budget" else default_energy_caps(p, points)
    values = np.sort(np.asarray(values, float))
    n_chunks = max(1, min(int(chunks or workers), len(values)))
    sc = dict(scenario or {})
    engine = ray if ray is not None else ("processes" if workers > 1 else None)
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="halo-pareto-")
        store = tmp.name
    st = Store(store)
    try:
        st.open({"solvers": list(solvers), "param": param, "values": values.tolist(), "chunks": n_chunks,
                 "time_limit": time_limit, "seed": seed, "scenario": sc, "costs": None if costs is None else _sha(costs)})
        jobs, order = [], []
        for s in solvers:
            idx = np.array_split(np.arange(len(values)), n_chunks)
            for ch in idx:
                if not len(ch):
                    continue
                keys = [f"{s}-{k:03d}" for k in ch]
                order += keys
                jobs.append(Job(_chain, {"solver": s, "param": param, "values": values[ch].tolist(), "keys": keys,
                                         "time_limit": time_limit, "seed": seed, "store": str(st.dir),
                                         "costs": None if costs is None else str(costs), "scenario": sc,
                                         "problem": None if ray is not None else p}, keys))
        run_jobs(jobs, st, engine, workers, progress, "pareto sweep (solver x budget)")
        recs = [st.get(k) for k in order]
    finally:
        if tmp is not None:
            tmp.cleanup()
    df = pd.DataFrame([r["row"] for r in recs])
    plans = [r["plan"] for r in recs]
    x = df["error_rel"] if param == "budget" else df["energy_j"]
    df["dominated"] = dominated(x.to_numpy(), df["objective"].to_numpy())
    return df, plans


def _sha(costs) -> str:
    from ..artifacts import sha256_file

    return sha256_file(Path(costs) / "meta.json")


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
        if (out_dir / "points").is_dir():  # the sweep's store of finished points (resume), kept with the front
            shutil.copytree(out_dir / "points", tmp / "points")
        write_json(tmp / "pareto.json", {"param": param, "normaliser": p.normaliser, **(meta or {})})
    return out_dir
