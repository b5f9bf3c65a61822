"""The planner: problem object, solvers, Pareto sweeps, plan files.

Solvers share one signature ``solve(problem, time_limit=, workers=, seed=, hint=None) -> Result``
and one evaluator (:func:`.problem.evaluate`); :func:`get_solver` maps names to them. The
planner stage (diagnose → hinted solve → explain → plan file) is :func:`.planner.plan`
(``plan_problem`` here).
"""

from __future__ import annotations

from importlib import import_module

from ..errors import UserError
from .problem import Assignment, Evaluation, Problem, aggregate, evaluate
from .result import Result

SOLVER_NAMES = ("cpsat", "milp", "relax", "lagrange", "greedy", "halo_layer", "halo_fold", "halo", "brute")
#: module of each solver name; ``halo`` is the old name of ``halo_layer`` (whole layers between
#: the full grid and the fastest codebook), ``halo_fold`` HALO's own per-fold mechanism
MODULES = {"halo_layer": "halo", "halo": "halo"}


def get_solver(name: str):
    """The ``solve`` function of solver ``name``; UserError listing the valid names otherwise."""
    if name not in SOLVER_NAMES:
        raise UserError(f"unknown solver {name!r}; choose one of {', '.join(SOLVER_NAMES)}")
    return import_module(f"{__name__}.{MODULES.get(name, name)}").solve


def build_problem(costs_dir, scenario) -> Problem:
    """Cost-table folder (docs/contracts.md §4) + Scenario → Problem (see :mod:`.build`)."""
    from .build import build_problem as _b

    return _b(costs_dir, scenario)


def solve(problem: Problem, solver: str = "cpsat", **kw) -> Result:
    return get_solver(solver)(problem, **kw)


def __getattr__(name: str):  # the planner stage, imported lazily (it reads artifact modules)
    if name in ("plan_problem", "solve_hinted", "Plan"):
        from . import planner

        return {"plan_problem": planner.plan, "solve_hinted": planner.solve_hinted, "Plan": planner.Plan}[name]
    raise AttributeError(name)


__all__ = ["Assignment", "Evaluation", "Problem", "Result", "aggregate", "build_problem", "evaluate", "get_solver", "solve", "solve_hinted", "plan_problem", "Plan", "SOLVER_NAMES"]
