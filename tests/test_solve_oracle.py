"""Oracle suite: every solver against brute force (:mod:`halo_opt.solve.brute`) on 1,200 random
small problems built to hit the edges: costs anywhere from 1e-12 to 1e3, domains without tiles,
levels no codebook can run, budgets and caps exactly at a plan's value, K = 1, max_switches = 0,
per-layer budgets, switch costs.

What must hold (the statuses of :mod:`halo_opt.solve.result`): a plan passes ``evaluate``;
"optimal" is within OPT_GAP of the brute-force optimum; every bound is ≤ the optimum;
"infeasible" only when brute force finds no plan; the exact solvers (cpsat, milp, and the
hinted cpsat of the planner stage) prove optimality or infeasibility on every problem — except
milp when the optimum lies within HiGHS's feasibility tolerance of a cap (its plan there breaks
the cap, the re-solve with tightened caps ends "feasible"; counted as ``milp:feasible``).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.solve import brute, cpsat, greedy, halo, lagrange, milp, relax
from halo_opt.solve.planner import solve_hinted
from halo_opt.solve.problem import Assignment, Problem, aggregate, evaluate
from halo_opt.solve.result import OPT_GAP

N_PROBLEMS, CHUNK = 1200, 100
BOUND_RTOL = 1e-9  # float64 slack on "bound ≤ optimum" (relative)
EXACT = {"cpsat": lambda p: cpsat.solve(p, time_limit=20, workers=1),
         "milp": lambda p: milp.solve(p, time_limit=20),
         "hinted": lambda p: solve_hinted(p, "cpsat", time_limit=20)}
OTHERS = {"relax": relax.solve, "lagrange": lagrange.solve, "greedy": greedy.solve, "halo": halo.solve}


def _mag(rng, wide: bool, shape, typical: float = 1.0):
    """Positive costs: lognormal around ``typical``, or 10^U(-12, 3) when ``wide``."""
    if wide:
        return 10.0 ** rng.uniform(-12, 3, shape)
    return typical * rng.lognormal(0, 1, shape)


def oracle_problem(seed: int) -> tuple[Problem, set[str]]:
    """A random small problem and the edge cases it exercises."""
    rng = np.random.default_rng(10_000 + seed)
    tags: set[str] = set()
    wide = rng.random() < 0.4
    T, C, V = int(rng.integers(0, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    L = int(rng.integers(1, 4))
    dom = np.sort(rng.integers(0, L, T))
    if len(set(dom.tolist())) < L:
        tags.add("empty_domain")
    layered = T > 0 and rng.random() < 0.25
    tl = dom.copy() if layered else np.zeros(T, int)  # a layer lies in one domain
    err = _mag(rng, wide, (T, C))
    if rng.random() < 0.15:
        err[:, rng.integers(0, C)] = 0.0
    E = _mag(rng, wide, (T, C))
    compat = rng.random((C, V)) < 0.7
    if rng.random() < 0.3:
        compat[:, rng.integers(0, V)] = False
        tags.add("dead_level")
    if rng.random() < 0.8:
        compat[rng.integers(0, C), rng.integers(0, V)] = True
    tg, cnt, gd, gl, ge, gE = aggregate(dom, tl, err, E)
    obj = int(rng.integers(0, 3))
    kw = dict(count=cnt, group_domain=gd, group_layer=gl, err=ge, energy_dyn=gE, tile_group=tg if T else None,
              lat=_mag(rng, wide, (L, V)), voltage=rng.uniform(0.6, 1.1, V), v0=1.0,
              leak_w=_mag(rng, wide, V) * (rng.random() < 0.7), compat=compat,
              w_latency=[1.0, 0.0, 0.5][obj], w_energy=[0.0, 1.0, 0.5][obj])
    if rng.random() < 0.3:
        kw["max_levels"] = 1
        tags.add("K=1")
    elif rng.random() < 0.3:
        kw["max_levels"] = int(rng.integers(1, V + 1))
    if L > 1 and rng.random() < 0.3:
        kw["max_switches"] = 0 if rng.random() < 0.6 else int(rng.integers(0, L))
        tags.add(f"max_switches={kw['max_switches']}")
    if rng.random() < 0.5:
        kw["switch_time_s"], kw["switch_energy_j"] = float(_mag(rng, wide, ())), float(_mag(rng, wide, ()))
        tags.add("switch_costs")
    p = Problem(**kw)
    # a random plan (may break timing): caps exactly at its values make the problem feasible when it does not
    lv = rng.integers(0, V, L)
    if "K=1" in tags or kw.get("max_switches") == 0:
        lv[:] = lv[0]
    ch = np.array([rng.choice(np.flatnonzero(compat[:, lv[d]])) if compat[:, lv[d]].any() else 0 for d in gd], int)
    a = Assignment.from_choice(p, ch, lv) if len(gd) else Assignment(np.zeros((0, C), np.int64), lv)
    ev = evaluate(p, a)
    emin, emax = float((cnt * ge.min(1)).sum()), float((cnt * ge.max(1)).sum())
    mode = rng.random()
    if mode < 0.35:
        budget = ev.error
        tags.add("budget_at_plan")
    elif mode < 0.9:
        budget = float(rng.uniform(emin * 0.9, max(emax, emin * 1.1)))
    else:
        budget = math.inf
    changes: dict = {"budget": budget}
    if rng.random() < 0.3:
        changes["energy_cap"] = ev.energy * (1.0 if rng.random() < 0.6 else rng.uniform(0.7, 1.5))
        tags.add("energy_cap")
    if rng.random() < 0.3:
        changes["latency_cap"] = ev.latency * (1.0 if rng.random() < 0.6 else rng.uniform(0.7, 1.5))
        tags.add("latency_cap")
    if layered:
        le = np.bincount(gl, weights=(a.counts * ge).sum(1), minlength=L)
        changes["layer_budget"] = le * np.where(rng.random(L) < 0.5, 1.0, rng.uniform(0.5, 2.0, L))
        tags.add("layer_budgets")
    if wide:
        tags.add("wide_costs")
    return p.replace(**changes), tags


def check(p: Problem, name: str, r, ref) -> None:
    opt = ref.objective if ref.has_plan else math.inf
    what = (name, r.status, r.objective, r.bound, opt)
    assert r.status in ("optimal", "feasible", "infeasible", "timeout", "unknown"), what
    if r.has_plan:
        assert evaluate(p, r.assignment).feasible, what
        assert r.objective >= opt * (1 - BOUND_RTOL), what  # brute force is the optimum
    if not ref.has_plan:
        assert not r.has_plan, what
    else:
        assert r.status != "infeasible", what
        assert r.bound <= opt * (1 + BOUND_RTOL), what
    if r.status == "optimal":
        assert r.objective <= opt * (1 + OPT_GAP) + 1e-300, what


def run_chunk(k: int) -> Counter:
    seen: Counter = Counter()
    for seed in range(k * CHUNK, (k + 1) * CHUNK):
        p, tags = oracle_problem(seed)
        ref = brute.solve(p)
        seen.update(tags | {"feasible" if ref.has_plan else "infeasible"})
        for name, f in EXACT.items():
            r = f(p)
            check(p, name, r, ref)
            want = ("optimal",) if ref.has_plan else ("infeasible",)
            if name == "milp" and ref.has_plan and r.info.get("tightened"):
                want = ("optimal", "feasible")  # optimum within HiGHS's feasibility tolerance (1e-6) of a cap
            assert r.status in want, (seed, name, r.status, r.info)
            seen[f"{name}:{r.status}"] += 1
        for name, f in OTHERS.items():
            try:
                r = f(p)
            except UserError:
                assert p.layer_budget is not None  # heuristics refuse per-layer budgets, nothing else
                continue
            check(p, name, r, ref)
            seen[f"{name}:{r.status}"] += 1
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("k", range(N_PROBLEMS // CHUNK))
def test_every_solver_matches_brute_force(k):
    seen = run_chunk(k)
    for tag in ("feasible", "infeasible", "wide_costs", "empty_domain", "budget_at_plan", "K=1", "max_switches=0",
                "layer_budgets", "switch_costs", "energy_cap", "latency_cap", "dead_level"):
        assert seen[tag] >= 2, (tag, seen)  # the chunk exercises every edge


if __name__ == "__main__":  # counts for the report: python tests/test_solve_oracle.py
    import time

    t0, total = time.perf_counter(), Counter()
    for k in range(N_PROBLEMS // CHUNK):
        total += run_chunk(k)
    print(f"{N_PROBLEMS} problems in {time.perf_counter() - t0:.1f} s")
    for key, v in sorted(total.items()):
        print(f"  {key}: {v}")
