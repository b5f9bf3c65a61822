"""Property test: exact solvers reach the brute-force optimum; heuristics never beat it;
every bound is ≤ the optimum; infeasible problems are detected (seeded loop over random
small problems with K, switch limits and caps)."""

from __future__ import annotations


import numpy as np
import pytest

from halo_opt.solve import brute, cpsat, greedy, halo, lagrange, milp, relax
from halo_opt.solve.problem import Problem, evaluate

TOL = 1e-6


def random_problem(seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 8))
    C = int(rng.integers(1, 5))
    V = int(rng.integers(1, 4))
    L = int(rng.integers(1, min(T, 4) + 1))
    dom = np.sort(np.concatenate([np.arange(L), rng.integers(0, L, T - L)]))
    err = rng.lognormal(0, 1, (T, C))
    if rng.random() < 0.3 and T > 1:  # duplicate tiles → groups with count > 1
        err[1] = err[0]
    E = rng.uniform(0.5, 2, (T, C))
    if rng.random() < 0.3 and T > 1:
        E[1] = E[0]
        dom[1] = dom[0]
    compat = rng.random((C, V)) < 0.7
    compat[rng.integers(0, C), rng.integers(0, V)] = True
    lat = rng.uniform(0.5, 2, (L, V))
    emin, emax = err.min(1).sum(), err.max(1).sum()
    budget = float(rng.uniform(emin * 0.9, emax))
    from halo_opt.solve.problem import aggregate

    layered = rng.random() < 0.2  # per-layer budgets (exact solvers only)
    tl = rng.integers(0, 2, T) if layered else np.zeros(T, int)
    tg, cnt, gd, gl, ge, gE = aggregate(dom, tl, err, E)
    obj = rng.integers(0, 3)
    kw = dict(
        count=cnt, group_domain=gd, group_layer=gl, err=ge, energy_dyn=gE, lat=lat,
        voltage=rng.uniform(0.6, 1.1, V), v0=1.0, leak_w=rng.uniform(0, 0.3, V), compat=compat,
        budget=budget, tile_group=tg,
        w_latency=[1.0, 0.0, 0.5][obj], w_energy=[0.0, 1.0, 0.5][obj],
        max_levels=int(rng.integers(1, V + 1)) if rng.random() < 0.5 else None,
        max_switches=int(rng.integers(0, L)) if rng.random() < 0.4 else None,
        switch_time_s=float(rng.uniform(0, 0.3)) if rng.random() < 0.5 else 0.0,
        switch_energy_j=float(rng.uniform(0, 0.3)) if rng.random() < 0.5 else 0.0,
    )
    if layered:
        le = np.bincount(tl, weights=err.min(1), minlength=2)
        kw["layer_budget"] = le * rng.uniform(0.9, 2.0, 2)
        kw["group_layer"] = gl
    if rng.random() < 0.2:
        kw["latency_cap"] = float(lat.min(1).sum() * rng.uniform(1.0, 1.6))
    if rng.random() < 0.2:
        kw["energy_cap"] = float(E.min(1).sum() * rng.uniform(0.8, 2.5))
    return Problem(**kw)


HEURISTICS = {"lagrange": lagrange.solve, "greedy": greedy.solve, "halo": halo.solve, "relax": relax.solve}


@pytest.mark.parametrize("chunk", range(4))
def test_random_small_problems(chunk):
    n_inf = n_feas = n_layer = 0
    for seed in range(chunk * 60, chunk * 60 + 60):
        p = random_problem(seed)
        n_layer += p.layer_budget is not None
        ref = brute.solve(p)
        exact = [cpsat.solve(p, time_limit=10, workers=1, seed=0), milp.solve(p, time_limit=10)]
        if ref.status == "infeasible":
            n_inf += 1
            for r in exact:
                assert r.status == "infeasible", (seed, r.solver, r.status)
            for name, f in ({} if p.layer_budget is not None else HEURISTICS).items():
                r = f(p)
                assert not r.has_plan, (seed, name)
                assert r.status in ("infeasible", "unknown"), (seed, name, r.status)
            continue
        n_feas += 1
        opt = ref.objective
        scale = max(1.0, abs(opt))
        for r in exact:
            assert r.status == "optimal", (seed, r.solver, r.status, r.info)
            assert abs(r.objective - opt) <= TOL * scale, (seed, r.solver, r.objective, opt)
            assert evaluate(p, r.assignment).feasible
        for name, f in ({} if p.layer_budget is not None else HEURISTICS).items():
            r = f(p)
            assert r.status != "infeasible", (seed, name, r.info)
            if r.has_plan:
                assert evaluate(p, r.assignment).feasible, (seed, name)
                assert r.objective >= opt - TOL * scale, (seed, name, r.objective, opt)
            assert r.bound <= opt + TOL * scale, (seed, name, r.bound, opt)
        for r in exact:
            assert r.bound <= opt + TOL * scale, (seed, r.solver, r.bound, opt)
    assert n_feas > 10 and n_inf > 0 and n_layer > 3
