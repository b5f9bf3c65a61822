"""The planner stage: a problem → diagnosed, solved with the Lagrangian hint, explained → a plan.

:func:`plan` is the one recipe behind ``halo-opt plan``, the demo, the closed loop and every
Pareto point; :func:`solve_hinted` is its solve step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..planfile import PlanFile
from .problem import Assignment, Problem, evaluate
from .result import OPT_GAP, Result

#: the Lagrangian hint runs to its iteration limits, not a clock, so the hinted solve is deterministic
HINT_TIME_LIMIT = 1e9


def solve_hinted(problem: Problem, solver: str = "cpsat", time_limit: float = 60.0, workers: int = 1, seed: int = 0,
                 hint: Assignment | None = None) -> Result:
    """``solver`` on ``problem``; for cpsat, first the Lagrangian plan (lagrange), handed to CP-SAT
    as its hint (with ``hint``, if better): without it energy objectives on thousands of tiles
    can end with no plan at all. The Lagrangian dual bound holds for the same problem, so the
    result keeps the larger of it and CP-SAT's (``info["bound_from"]`` says whose). No
    Lagrangian hint for other solvers or with per-layer budgets (lagrange refuses them)."""
    from . import get_solver

    f = get_solver(solver)
    if solver != "cpsat" or problem.layer_budget is not None:
        return f(problem, time_limit=time_limit, workers=workers, seed=seed, hint=hint)
    t0 = time.perf_counter()
    h = get_solver("lagrange")(problem, time_limit=HINT_TIME_LIMIT, seed=seed, hint=hint)
    cands = [a for a in ((h.assignment if h.has_plan else None), hint) if a is not None and evaluate(problem, a).feasible]
    best = min(cands, key=lambda a: evaluate(problem, a).objective, default=None)
    r = f(problem, time_limit=time_limit, workers=workers, seed=seed, hint=best)
    r.info["hint_s"] = time.perf_counter() - t0 - r.wall_s
    r.wall_s = time.perf_counter() - t0
    if r.has_plan and h.bound > r.bound:
        r.bound, r.info["bound_from"] = h.bound, "lagrange"
        r.status = "optimal" if r.gap <= OPT_GAP else r.status
    return r


@dataclass
class Plan:
    """A planner result: the problem, the solve, and (``file``) the plan artifact — None when
    there is no plan (``reason`` says why) or no cost folder was given."""

    problem: Problem
    result: Result
    file: PlanFile | None = None
    reason: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result.has_plan

    def save(self, path: str | Path) -> Path:
        from ..planfile import save_plan

        if self.file is None:
            raise ValueError("no plan to save")
        return save_plan(path, self.file)

    def to_dict(self) -> dict:
        if self.file is None:
            raise ValueError("no plan file (no plan, or no cost folder given)")
        return self.file.to_dict()


def plan(problem: Problem, solver: str = "cpsat", *, costs: str | Path | None = None, scenario: dict | None = None,
         time_limit: float = 60.0, workers: int = 1, seed: int = 0, hint: Assignment | None = None,
         strict: bool = True) -> Plan:
    """Diagnose → :func:`solve_hinted` → explain → typed plan (the plan file needs ``costs``,
    the cost folder the problem was built from). ``strict``: a problem without a
    plan raises UserError (the diagnosis, the infeasibility explanation, or the solver's
    status); otherwise the Plan comes back without a file and with ``reason``."""
    from . import get_solver
    from .infeasible import diagnose, explain
    from .plan import plan_file

    get_solver(solver)
    if time_limit <= 0 or workers < 1:
        raise UserError("time limit must be > 0 and workers >= 1")
    msg = diagnose(problem)
    if msg:
        r = Result(solver, "infeasible", bound=math.inf, info={"reason": msg})
    else:
        r = solve_hinted(problem, solver, time_limit=time_limit, workers=workers, seed=seed, hint=hint)
    if r.has_plan:
        return Plan(problem, r, plan_file(problem, r, scenario or {}, costs) if costs is not None else None)
    if r.status == "infeasible":
        reason = r.info.get("reason") or explain(problem)
    else:
        reason = (f"solver {solver} found no plan ({r.status}) in {time_limit:g} s; raise the time limit "
                  f"or try --solver lagrange")
    if strict:
        raise UserError(reason)
    return Plan(problem, r, None, reason)
