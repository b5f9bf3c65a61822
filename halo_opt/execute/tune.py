"""Closed loop: the largest error budget whose plan meets an accuracy target on the tuning split.

A composition, not a back door: ``plan_fn(budget) -> plan`` is the planner (passed in), and
``measure(plan) -> metrics`` the executor + evaluator. Accuracy is assumed to worsen as the
budget grows, so the answer is found by bisection on ``log(budget)`` between ``lo`` (must
meet the target) and ``hi``; every budget is planned and measured at most once (cache). A
budget the planner cannot meet (UserError, e.g. below the smallest achievable error) counts
as missing the target. The result is the largest *tested* budget that met it, with the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from .evaluate import meets


@dataclass
class TuneResult:
    budget: float
    plan: dict
    metrics: dict
    history: list[dict] = field(default_factory=list)
    test_metrics: dict | None = None   # the chosen plan on the test split (never seen by calibration or tuning)
    enforced: str = ""                 # metric, aggregate and bound the bisection enforced (on the tuning split)


def check_range(lo: float, hi: float) -> None:
    """The bisection's budget range: 0 <= lo < hi (else one line naming both options)."""
    if not (0 <= lo < hi):
        raise UserError(f"need 0 <= --budget-min < --budget-max, got {lo} and {hi}")


def tune(plan_fn: Callable[[float], dict], measure: Callable[[dict], dict], target: tuple[str, str, float],
         lo: float, hi: float, iters: int = 8, rtol: float = 0.02, progress: Callable[[str], None] | None = None) -> TuneResult:
    """Bisection on the budget in [lo, hi] (geometric midpoints; from lo = 0, decades down); see module docstring."""
    check_range(lo, hi)
    cache: dict[float, dict] = {}

    def probe(b: float) -> dict:
        if b not in cache:
            try:
                plan = plan_fn(b)
            except UserError as e:  # the planner's advice names `plan`'s --budget; here the floor is --budget-min
                cache[b] = {"budget": b, "ok": False, "plan": None, "metrics": {}, "note": str(e).replace("--budget ", "--budget-min ")}
            else:
                m = measure(plan)
                cache[b] = {"budget": b, "ok": meets(m, target), "plan": plan, "metrics": m, "note": ""}
            if progress:
                r = cache[b]
                shown = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items()) or r["note"]
                progress(f"budget ε {b:.3g}: {'meets' if r['ok'] else 'misses'} the target ({shown})")
        return cache[b]

    def history():
        return [{k: v for k, v in r.items() if k != "plan"} for r in sorted(cache.values(), key=lambda r: r["budget"])]

    from .evaluate import describe_target

    enforced = describe_target(target)
    top = probe(hi)
    if top["ok"]:
        return TuneResult(hi, top["plan"], top["metrics"], history(), enforced=enforced)
    bot = probe(lo)
    if bot["plan"] is not None and not bot["ok"]:
        raise UserError(f"even budget {lo:g} misses the target {target[0]}{target[1]}{target[2]:g} ({bot['metrics']}); "
                        "lower --budget-min or relax the target")
    ok = lo if bot["ok"] else None   # largest budget known to meet the target
    low = lo                         # largest budget known infeasible (while none meets yet)
    b = hi                           # smallest budget known to miss the target
    for _ in range(iters):
        a = ok if ok is not None else low
        if a > 0 and b / a <= 1 + rtol:
            break
        mid = math.sqrt(a * b) if a > 0 else b / 10  # from 0: step down by decades
        r = probe(mid)
        if r["ok"]:
            ok = mid
        elif r["plan"] is None and ok is None:
            low = mid
        else:
            b = mid
    if ok is None:
        raise UserError(f"no tested budget in [{lo:g}, {hi:g}] meets the target {target[0]}{target[1]}{target[2]:g} "
                        f"(budgets up to {low:g} are infeasible, {b:g} already misses); relax the target or raise --iters")
    best = cache[ok]
    return TuneResult(ok, best["plan"], best["metrics"], history(), enforced=enforced)
