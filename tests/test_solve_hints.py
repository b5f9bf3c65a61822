"""CP-SAT hints and the Lagrangian primal: a feasible plan fits the outer integer-scaled rows;
a feasible hint is never lost when CP-SAT's search yields nothing; lagrange is never worse
than greedy; the hinted solve keeps a valid bound."""

from __future__ import annotations

import numpy as np
import pytest

from halo_opt.solve import cpsat, greedy, lagrange, solve_hinted
from halo_opt.solve.model import build, encode
from halo_opt.solve.problem import evaluate
from test_solve_property import TOL, random_problem

SEEDS = [s for s in range(200) if random_problem(s).layer_budget is None][:80]


@pytest.mark.parametrize("seed", SEEDS)
def test_feasible_plans_fit_the_outer_scaled_rows(seed):
    """The outer integer model is a relaxation: every plan evaluate accepts (here the Lagrangian
    plan, used as CP-SAT's hint) meets its rows, so the hint is never discarded."""
    p = random_problem(seed)
    a = lagrange.solve(p, time_limit=5).assignment
    if a is None:
        return
    m = build(p)
    rows, _ = cpsat.scaled_rows(m, m.ub.astype(np.int64), "outer")
    x = np.rint(encode(p, m, a)).astype(np.int64)
    for cols, coefs, lo, hi in rows:
        v = int((coefs * x[cols]).sum())
        assert lo <= v <= hi


@pytest.mark.parametrize("seed", SEEDS)
def test_lagrange_never_worse_than_greedy(seed):
    p = random_problem(seed)
    g, l_ = greedy.solve(p, time_limit=5), lagrange.solve(p, time_limit=5)
    if g.has_plan:
        assert l_.has_plan and l_.objective <= g.objective * (1 + TOL) + TOL
        assert evaluate(p, l_.assignment).feasible


def test_feasible_hint_is_kept_when_cpsat_finds_nothing(monkeypatch):
    from ortools.sat.python import cp_model

    p = next(random_problem(s) for s in SEEDS if lagrange.solve(random_problem(s), time_limit=5).has_plan)
    h = lagrange.solve(p, time_limit=5).assignment
    from ortools.sat import cp_model_pb2

    monkeypatch.setattr(cpsat, "_run", lambda solver, mdl: (cp_model.UNKNOWN, cp_model_pb2.CpSolverResponse()))
    r = cpsat.solve(p, time_limit=5, workers=1, hint=h)
    assert r.has_plan and r.status == "feasible" and r.info["incumbent"] == "hint"
    assert np.array_equal(r.assignment.counts, h.counts) and np.array_equal(r.assignment.level, h.level)
    assert cpsat.solve(p, time_limit=5, workers=1).status == "timeout"  # without a hint: no plan, no pretence


@pytest.mark.parametrize("seed", SEEDS[:30])
def test_solve_hinted_bound_is_valid_and_plan_feasible(seed):
    from halo_opt.solve import brute

    p = random_problem(seed)
    ex = brute.solve(p)
    r = solve_hinted(p, "cpsat", time_limit=5)
    if not ex.has_plan:
        assert not r.has_plan
        return
    assert r.has_plan and evaluate(p, r.assignment).feasible
    assert r.bound <= ex.objective * (1 + TOL) + TOL
    assert r.objective == pytest.approx(ex.objective, rel=1e-6, abs=1e-9)
