"""Closed loop: planner ∘ executor. Given an accuracy target, the largest error budget whose
plan meets it on the *tuning* split (:func:`halo_opt.execute.tune.tune` does the bisection);
with a test context, the chosen plan is then measured on the disjoint *test* split, which
neither calibration nor tuning saw (:data:`halo_opt.calibration.text.PARTS`).

Lives above both stages: the planner never sees the model, the executor never re-plans.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .execute.evaluate import parse_target
from .execute.pipeline import Context, run_plan
from .execute.tune import TuneResult, tune
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
