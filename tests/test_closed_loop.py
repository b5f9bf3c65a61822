"""`closed_loop.tune_budget` (planner ∘ executor) on a tiny model: the budget it returns meets the
target, every larger tested budget misses it, and its plan is the planner's plan at that budget."""

from __future__ import annotations

import pytest

from halo_opt.closed_loop import tune_budget
from halo_opt.errors import UserError
from halo_opt.execute.evaluate import meets, parse_target
from halo_opt.execute.pipeline import run_plan
from halo_opt.paths import formulations_dir
from halo_opt.solve import solve_hinted
from halo_opt.solve.build import build_problem
from halo_opt.solve.scenario import load_scenario

from test_exec_eval import _ctx


def test_tune_budget_returns_the_largest_tested_budget_meeting_the_target(tmp_path):
    ctx = _ctx(tmp_path)
    costs = tmp_path / "costs"
    sc = load_scenario(formulations_dir() / "performance.toml")
    measure = lambda b: run_plan(ctx, _plan(costs, sc, b), "rtn")[1]["cosine_mean"]
    from halo_opt.solve.infeasible import min_error

    p = build_problem(costs, sc)
    lo, hi = min_error(p) / p.normaliser * 1.001, 5.0
    best, worst = measure(lo), measure(hi)
    assert best > worst
    target = f"cosine>={(best + worst) / 2:.6f}"
    res = tune_budget(ctx, costs, sc, "greedy", target, lo, hi, iters=8, time_limit=5)
    assert meets(res.metrics, parse_target(target)) and lo <= res.budget < hi
    assert all(not h["ok"] for h in res.history if h["budget"] > res.budget)
    assert res.budget == max(h["budget"] for h in res.history if h["ok"])
    assert res.plan["tile_codebook"] == _plan(costs, sc, res.budget)["tile_codebook"]  # same inputs, same plan
    with pytest.raises(UserError, match="unknown solver"):
        tune_budget(ctx, costs, sc, "gurobi", target)
    assert best < 1.0  # so cosine >= 1 is possible in principle but missed at every budget
    with pytest.raises(UserError, match="even budget .* misses the target"):
        tune_budget(ctx, costs, sc, "greedy", "cosine>=1", lo, hi, iters=3, time_limit=5)
    with pytest.raises(UserError, match="can never be met"):  # refused before any plan
        tune_budget(ctx, costs, sc, "greedy", "cosine>=1.01", lo, hi, iters=3, time_limit=5)


def _plan(costs, sc, budget):
    from halo_opt.solve.plan import plan_dict

    q = sc.with_overrides(budget=budget)
    p = build_problem(costs, q)
    r = solve_hinted(p, "greedy", time_limit=5, seed=0)
    return plan_dict(p, r, q.to_dict(), costs)
