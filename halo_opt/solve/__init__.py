"""The planner: problem object, solvers, Pareto sweeps, plan files.

Solvers share one signature ``solve(problem, time_limit=, workers=, seed=, hint=None) -> Result``
and one evaluator (:func:`.problem.evaluate`). ``SOLVERS`` maps names to them.
"""

from __future__ import annotations

import math
from importlib import import_module

from ..errors import UserError
from .problem import Assignment, Evaluation, Problem, aggregate, evaluate
from .result import Result

SOLVER_NAMES = ("cpsat", "milp", "relax", "lagrange", "greedy", "halo", "brute")


def get_solver(name: str):
    """The ``solve`` function of solver ``name``; UserError listing the valid names otherwise."""
    if name not in SOLVER_NAMES:
        raise UserError(f"unknown solver {name!r}; choose one of {', '.join(SOLVER_NAMES)}")
    return import_module(f"{__name__}.{name}").solve


def build_problem(costs_dir, scenario) -> Problem:
    """Cost-table folder (docs/contracts.md §4) + Scenario → Problem (see :mod:`.build`)."""
    from .build import build_problem as _b

    return _b(costs_dir, scenario)


def solve(problem: Problem, solver: str = "cpsat", **kw) -> Result:
    return get_solver(solver)(problem, **kw)


def solve_hinted(problem: Problem, solver: str = "cpsat", time_limit: float = 60.0, workers: int = 1, seed: int = 0) -> Result:
    """Like :func:`solve`, but CP-SAT starts from a Lagrangian plan (a tenth of the time limit):
    without it, energy objectives on thousands of tiles can end with no plan at all. The hint is
    solved with the budget shrunk by CP-SAT's rounding slack (:func:`.cpsat.hint_problem`) so
    CP-SAT can use it; its dual bound, moved to the real budget (``d(λ) − λ·B``, see
    :mod:`.lagrange`), stays valid, and the result keeps the larger of that and CP-SAT's bound
    (``info["bound_from"]`` says whose). No hint for milp (scipy's HiGHS takes none) or with
    per-layer budgets (lagrange refuses them)."""
    if solver != "cpsat" or problem.layer_budget is not None:
        return get_solver(solver)(problem, time_limit=time_limit, workers=workers, seed=seed)
    from .cpsat import hint_problem

    tight = hint_problem(problem)
    h = get_solver("lagrange")(tight, time_limit=max(1.0, time_limit / 10), seed=seed)
    r = get_solver("cpsat")(problem, time_limit=time_limit, workers=workers, seed=seed,
                            hint=h.assignment if h.has_plan else None)
    if not (h.has_plan and r.has_plan):  # an infeasible shrunk problem gives no usable bound
        return r
    dual = h.bound - h.info["bound_lambda"] * (problem.budget - tight.budget) if math.isfinite(problem.budget) else h.bound
    if dual > r.bound:
        r.bound, r.info["bound_from"] = dual, "lagrange"
        if r.gap <= 1e-9:
            r.status = "optimal"
    return r


__all__ = ["Assignment", "Evaluation", "Problem", "Result", "aggregate", "build_problem", "evaluate", "get_solver", "solve", "solve_hinted", "SOLVER_NAMES"]
