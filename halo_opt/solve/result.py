"""What every solver returns, and the one rule that turns a plan and a bound into a status."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .problem import Assignment, Problem, evaluate

#: optimal: a plan whose objective is within OPT_GAP (relative) of a valid lower bound;
#: feasible: a plan, not proven within OPT_GAP; infeasible: proven that no plan passes
#: :func:`.problem.evaluate`; timeout: no plan found before the time limit; unknown: no plan
#: found and infeasibility not proven (heuristics, or an exact solver whose plan failed the check).
STATUSES = ("optimal", "feasible", "infeasible", "timeout", "unknown")
#: the stated optimality tolerance: "optimal" iff (objective − bound) ≤ OPT_GAP·objective
OPT_GAP = 1e-6


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
        """Relative gap (objective − bound) / objective; 0 when bound ≥ objective, inf without a bound."""
        if self.assignment is None or not math.isfinite(self.objective) or not math.isfinite(self.bound):
            return math.inf
        d = self.objective - self.bound
        return 0.0 if d <= 0 else d / max(abs(self.objective), 1e-300)

    @property
    def has_plan(self) -> bool:
        return self.assignment is not None and self.status in ("optimal", "feasible")

    def summary(self) -> dict:
        return {"name": self.solver, "status": self.status, "objective": self.objective,
                "bound": self.bound, "gap": self.gap, "wall_s": self.wall_s}


def finish(problem: Problem, solver: str, a: Assignment | None, bound: float, t0: float, **info) -> Result:
    """Evaluate ``a`` with the one evaluator and build the Result. Status from the plan and the
    bound only: "optimal" iff the plan passes :func:`evaluate` and its gap to ``bound`` is at most
    :data:`OPT_GAP`. Bounds are clipped at 0 (every objective coefficient is ≥ 0)."""
    wall = time.perf_counter() - t0
    if bound != -math.inf:
        bound = max(bound, 0.0)
    if a is None:
        status = info.pop("status", "unknown")
        if status == "unknown":  # no plan: prove infeasibility when one constraint alone fails
            from .infeasible import diagnose

            reason = diagnose(problem)
            if reason:
                status, info["reason"] = "infeasible", reason
        return Result(solver, status, bound=math.inf if status == "infeasible" else bound, wall_s=wall, info=info)
    ev = evaluate(problem, a)
    if not ev.feasible:
        info["violations"] = ev.violations
        return finish(problem, solver, None, bound, t0, **info)
    info.pop("status", None)
    r = Result(solver, "feasible", ev.objective, bound, wall, a, info)
    if r.gap <= OPT_GAP:
        r.status = "optimal"
    return r
