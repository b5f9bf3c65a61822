"""Closed loop: planner ∘ executor. Given an accuracy target, the largest error budget whose
plan meets it on the *tuning* split (:func:`halo_opt.execute.tune.tune` does the bisection);
with a test context, the chosen plan is then measured on the disjoint *test* split, which
neither calibration nor tuning saw (:data:`halo_opt.calibration.text.PARTS`).

Lives above both stages: the planner never sees the model, the executor never re-plans.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError, require
from .execute.evaluate import parse_target
from .execute.pipeline import Context, run_plan
from .execute.tune import TuneResult, check_range, tune
from .solve import get_solver
from .solve.build import build_problem
from .solve.planner import plan
from .solve.scenario import Scenario


def tune_budget(ctx: Context, costs: str | Path, scenario: Scenario, solver: str, target: str,
                lo: float = 0.0, hi: float = 0.2, iters: int = 8, time_limit: float = 30.0, seed: int = 0,
                method: str = "rtn", blocksize: int = 128, progress=None, test_ctx: Context | None = None) -> TuneResult:
    """Bisection on ``scenario``'s relative budget ε: plan with ``solver``, execute with ``method``,
    evaluate on ``ctx``'s batches (the tuning split), keep the largest ε that meets ``target``;
    ``test_ctx`` (same model and costs, the test split's batches) measures the chosen plan."""
    tgt = parse_target(target)
    get_solver(solver)  # unknown solver: fail before any work

    def plan_fn(b: float) -> dict:
        sc = scenario.with_overrides(budget=b)
        return plan(build_problem(costs, sc), solver, costs=costs, scenario=sc.to_dict(), time_limit=time_limit,
                    seed=seed).to_dict()

    def measure(plan: dict) -> dict:
        return run_plan(ctx, plan, method, blocksize, False)[1]

    res = tune(plan_fn, measure, tgt, lo, hi, iters, progress=progress)
    if test_ctx is not None:
        res.test_metrics = run_plan(test_ctx, res.plan, method, blocksize, False)[1]
    return res


def study_point(store: str, key: str, costs: str, calib: str, model: str, goal: str, scenario: dict, solver: str,
                target: str, lo: float, hi: float, iters: int, time_limit: float, seed: int = 0, method: str = "rtn",
                blocksize: int = 128, heldout: int = 32, seq_len: int = 128, text: list[str] | None = None,
                profile: str | None = None, threads: int = 1) -> None:
    """One (goal, solver) point of a closed-loop study (a job of :func:`halo_opt.distributed.run_jobs`):
    load the context from the folders, :func:`tune_budget` on the tuning split, the chosen plan on
    the test split; the record goes to ``store`` under ``key`` (a UserError of the loop is the
    record's ``note``). Torch runs on ``threads`` threads whatever the engine, so the measured
    numbers are the same serially and on Ray."""
    import time

    import torch

    from .distributed import Store
    from .solve.scenario import from_dict

    st = Store(store)
    if st.has(key):
        return
    t0, was = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        ctx, test_ctx = study_contexts(costs, calib, model, heldout, seq_len, seed, text, profile, int(threads))
        rec = {"goal": goal, "solver": solver, "context_s": time.perf_counter() - t0}  # ≈ 0 once loaded here
        try:
            res = tune_budget(ctx, costs, from_dict(scenario), solver, target, lo, hi, iters, time_limit, seed, method,
                              blocksize, test_ctx=test_ctx)
        except UserError as e:
            rec["note"] = str(e)
        else:
            rec |= {"budget": res.budget, "plan": res.plan, "metrics": res.metrics, "test_metrics": res.test_metrics,
                    "enforced": res.enforced, "history": res.history}
    finally:
        torch.set_num_threads(was)
    rec["wall_s"] = time.perf_counter() - t0
    st.put(key, rec)


#: The (tuning, test) contexts loaded in this process (a Ray worker runs several study points): the last one.
_CONTEXTS: dict = {}


def study_contexts(costs: str, calib: str, model: str, heldout: int, seq_len: int, seed: int, text: list[str] | None,
                   profile: str | None, threads: int):
    """The tuning-split :class:`Context` and its test-split twin of a study point, memoised per
    process (the last inputs only): the points of a study that land on the same worker load the
    model, costs and batches once. Safe to share: a point reads the context and fills only its
    caches of values that do not depend on the point (Hessians, the float model's reference
    outputs; computed with the same ``threads``, part of the key). Keyed by the inputs and the
    folders' files (sizes, mtimes)."""
    from .artifacts import folder_stamp
    from .execute.pipeline import context_from_folders, split_batches

    def stamp(p):  # a folder: its files; a file: its size and mtime; else the string as it is
        q = Path(p)
        if q.is_dir():
            return str(q.resolve()), folder_stamp(q)
        return (str(q.resolve()), q.stat().st_size, q.stat().st_mtime_ns) if q.is_file() else p

    key = (stamp(costs), stamp(calib), stamp(model), heldout, seq_len, seed, None if text is None else tuple(map(stamp, text)),
           None if profile is None else stamp(profile), threads)
    if _CONTEXTS.get("key") != key:
        _CONTEXTS.clear()
        ctx = context_from_folders(costs, calib, model, heldout, seq_len, seed, text, profile, part="tuning")
        _CONTEXTS.update(key=key, value=(ctx, ctx.with_heldout(split_batches(ctx, text, "test", heldout, seq_len, seed))))
    return _CONTEXTS["value"]


def tune_study(costs: str | Path, calib: str | Path, model: str, goals: list[str], solvers: list[str], target: str, store: str | Path,
               lo: float = 0.0, hi: float = 0.2, iters: int = 8, time_limit: float = 30.0, seed: int = 0, method: str = "rtn",
               blocksize: int = 128, heldout: int = 32, seq_len: int = 128, text: list[str] | None = None,
               profile: str | None = None, ray: str | None = None, workers: int = 1, threads: int = 1,
               progress: bool = True) -> list[dict]:
    """The closed loop over goals × solvers: one :func:`study_point` per pair, serially, in
    ``workers`` local processes or on Ray (``ray``: local | auto | address), every finished point
    kept in ``store`` (a rerun resumes). ``goals``: shipped scenario names or TOML paths. Returns
    the records in goals × solvers order (``key`` = ``<goal>-<solver>``)."""
    from .artifacts import sha256_file
    from .calibration.hessian import load_calibration
    from .costfolder import load_costs_json
    from .distributed import Job, Store, check_engine, run_jobs
    from .paths import scenario_file
    from .solve.scenario import load_scenario

    parse_target(target)
    for s in solvers:
        get_solver(s)
    check_range(lo, hi)
    check_engine(ray, workers)
    require(int(threads) >= 1 and int(iters) >= 1, f"--threads and --iters must be at least 1, got {threads} and {iters}")
    load_costs_json(costs)  # a missing or broken cost or calibration folder: one line, before any point starts
    load_calibration(calib)
    scs = {g: load_scenario(scenario_file(g)) for g in goals}
    args = dict(costs=str(costs), calib=str(calib), model=str(model), target=target, lo=lo, hi=hi, iters=iters,
                time_limit=time_limit, seed=seed, method=method, blocksize=blocksize, heldout=heldout, seq_len=seq_len,
                text=text, profile=None if profile is None else str(profile), threads=threads)
    st = Store(store)
    st.open(args | {"costs_sha256": sha256_file(Path(costs) / "meta.json"), "goals": list(goals), "solvers": list(solvers),
                    "scenarios": {g: s.to_dict() for g, s in scs.items()}})
    jobs = []
    for g in goals:
        for s in solvers:
            key = f"{Path(str(g)).stem}-{s}"
            jobs.append(Job(study_point, args | {"store": str(st.dir), "key": key, "goal": str(g), "scenario": scs[g].to_dict(),
                                                 "solver": s}, [key]))
    engine = ray if ray is not None else ("processes" if workers > 1 else None)
    try:
        run_jobs(jobs, st, engine, workers, progress, "closed-loop study (goal x solver)")
    finally:
        _CONTEXTS.clear()  # serial: the points' context was loaded in this process; let it go
    return [st.get(j.keys[0]) for j in jobs]
