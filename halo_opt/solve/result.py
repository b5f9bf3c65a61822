"""What every solver returns."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .problem import Assignment, Problem, evaluate

#: optimal: proven optimal (within the solver's gap tolerance); feasible: a plan, not proven
#: optimal; infeasible: proven infeasible; timeout: no plan found before the time limit;
#: unknown: a heuristic found no feasible plan (infeasibility not proven).
STATUSES = ("optimal", "feasible", "infeasible", "timeout", "unknown")


@dataclass
class Result:
    solver: str
    status: str
    objective: float = math.nan  # objective of the plan, re-evaluated in float64 by evaluate()
    bound: float = -math.inf  # valid lower bound on the optimum (-inf: none)
    wall_s: float = 0.0
    assignment: Assignment | None = None
    info: dict = field(default_factory=dict)  # solver-specific (scaling error, iterations, λ...)

    @property
    def gap(self) -> float:
        """Relative gap (objective − bound) / |objective|; 0 when optimal, inf without a bound."""
        if self.assignment is None or not math.isfinite(self.objective):
            return math.inf
        if not math.isfinite(self.bound):
            return math.inf
        return max(0.0, self.objective - self.bound) / max(abs(self.objective), 1e-300)

    @property
    def has_plan(self) -> bool:
        return self.assignment is not None and self.status in ("optimal", "feasible")

    def summary(self) -> dict:
        return {"name": self.solver, "status": self.status, "objective": self.objective,
                "bound": self.bound, "gap": self.gap, "wall_s": self.wall_s}


def finish(problem: Problem, solver: str, a: Assignment | None, bound: float, t0: float,
           proven_optimal: bool = False, **info) -> Result:
    """Evaluate ``a`` with the one evaluator and build the Result (status from feasibility)."""
    wall = time.perf_counter() - t0
    if a is None:
        status = info.pop("status", "unknown")
        if status == "unknown":  # a heuristic found nothing: prove infeasibility when one constraint alone fails
            from .infeasible import diagnose

            reason = diagnose(problem)
            if reason:
                status, info["reason"] = "infeasible", reason
        return Result(solver, status, bound=bound, wall_s=wall, info=info)
    ev = evaluate(problem, a)
    if not ev.feasible:
        info["violations"] = ev.violations
        return finish(problem, solver, None, bound, t0, **info)
    info.pop("status", None)
    r = Result(solver, "feasible", ev.objective, bound, wall, a, info)
    if proven_optimal or r.gap <= 1e-9:
        r.status = "optimal"
    return r
