"""Unit tests of the planner's parts: level DP vs enumeration, grouping exactness,
problem file round trip, infeasibility diagnosis, scaling report, determinism."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.solve import brute, cpsat, lagrange, milp
from halo_opt.solve.infeasible import diagnose, min_error
from halo_opt.solve.levels import best_levels
from halo_opt.solve.problem import Assignment, Problem, aggregate, evaluate


@pytest.mark.parametrize("seed", range(40))
def test_level_dp_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    L, V = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    cost = rng.uniform(0, 1, (L, V))
    cost[rng.random((L, V)) < 0.2] = np.inf
    sw = float(rng.uniform(0, 0.5))
    K = None if rng.random() < 0.3 else int(rng.integers(1, V + 1))
    S = None if rng.random() < 0.3 else int(rng.integers(0, L))
    best = math.inf
    for lv in itertools.product(range(V), repeat=L):
        nsw = sum(a != b for a, b in zip(lv[1:], lv[:-1]))
        if (K is not None and len(set(lv)) > K) or (S is not None and nsw > S):
            continue
        best = min(best, sum(cost[l, v] for l, v in enumerate(lv)) + sw * nsw)
    val, lv = best_levels(cost, sw, K, S)
    assert (val == best == math.inf) or val == pytest.approx(best, rel=1e-12)
    if lv is not None:
        nsw = int((lv[1:] != lv[:-1]).sum())
        assert cost[np.arange(L), lv].sum() + sw * nsw == pytest.approx(val, rel=1e-12)
        assert K is None or len(set(lv.tolist())) <= K
        assert S is None or nsw <= S


def _tile_problem(seed, T=6, dup=True):
    rng = np.random.default_rng(seed)
    dom = np.sort(rng.integers(0, 2, T)); dom[0] = 0; dom[-1] = 1
    err = rng.lognormal(0, 1, (T, 3)); E = rng.uniform(1, 2, (T, 3))
    if dup:
        err[2:4] = err[1]; E[2:4] = E[1]; dom[1:4] = dom[1]
    return dom, err, E


@pytest.mark.parametrize("seed", range(10))
def test_grouping_is_exact(seed):
    """The optimum over counted groups equals the optimum over single tiles."""
    dom, err, E = _tile_problem(seed)
    rng = np.random.default_rng(seed + 100)
    common = dict(lat=rng.uniform(1, 2, (2, 2)), voltage=[0.8, 1.0], v0=1.0, leak_w=[0.1, 0.2],
                  compat=[[True, False], [True, True], [False, True]], w_latency=0.5, w_energy=1.0,
                  budget=float(err.min(1).sum() * 1.5))
    tg, cnt, gd, gl, ge, gE = aggregate(dom, np.zeros(len(dom), int), err, E)
    assert cnt.max() >= 3 and len(cnt) < len(dom)
    np.testing.assert_array_equal(ge[tg], err)
    grouped = Problem(count=cnt, group_domain=gd, err=ge, energy_dyn=gE, tile_group=tg, **common)
    single = Problem(count=np.ones(len(dom)), group_domain=dom, err=err, energy_dyn=E, **common)
    a, b = brute.solve(grouped), brute.solve(single)
    c = cpsat.solve(grouped, workers=1)
    assert a.status == b.status == c.status
    if a.has_plan:
        assert a.objective == pytest.approx(b.objective, rel=1e-9)
        assert c.objective == pytest.approx(b.objective, rel=1e-7)
        tc = c.assignment.tile_codebook(grouped)  # expanded plan evaluates the same on single tiles
        ev = evaluate(single, Assignment.from_choice(single, tc, c.assignment.level))
        assert ev.feasible and ev.objective == pytest.approx(c.objective, rel=1e-12)


def test_problem_roundtrip(tmp_path):
    dom, err, E = _tile_problem(0)
    tg, cnt, gd, gl, ge, gE = aggregate(dom, np.zeros(len(dom), int), err, E)
    p = Problem(count=cnt, group_domain=gd, err=ge, energy_dyn=gE, lat=[[1, 2], [3, 4]], voltage=[0.8, 1.0],
                leak_w=[0, 0], compat=np.ones((3, 2), bool), budget=2.0, max_levels=1, tile_group=tg,
                codebook_names=["full", "a", "b"])
    p.save(tmp_path / "prob")
    q = Problem.load(tmp_path / "prob")
    for k in ("count", "err", "energy_dyn", "lat", "compat", "tile_group"):
        np.testing.assert_array_equal(getattr(p, k), getattr(q, k))
    assert q.max_levels == 1 and math.isinf(q.energy_cap) and q.codebook_names == p.codebook_names
    assert not list((tmp_path / "prob").glob("*.pkl"))
    (tmp_path / "prob" / "arrays.safetensors").unlink()
    with pytest.raises(UserError, match="not found"):
        Problem.load(tmp_path / "prob")


def test_invalid_problem_is_user_error():
    with pytest.raises(UserError, match="compat"):
        Problem(count=[1], group_domain=[0], err=[[1.0]], energy_dyn=[[1.0]], lat=[[1.0]], voltage=[1.0],
                leak_w=[0.0], compat=np.ones((2, 1), bool))


def _small():
    return Problem(count=[1, 2], group_domain=[0, 1], err=[[1.0, 5.0], [2.0, 8.0]], energy_dyn=[[1, 0.5], [1, 0.5]],
                   lat=[[2.0, 1.0], [2.0, 1.0]], voltage=[1.0, 1.0], leak_w=[0, 0],
                   compat=[[True, False], [True, True]], normaliser=100.0, budget=10.0)


def test_infeasible_messages():
    p = _small()
    assert min_error(p) == pytest.approx(5.0)
    msg = diagnose(p.replace(budget=1.0))
    assert "error budget 1 (relative 0.01)" in msg and "smallest achievable error 5" in msg and ">= 0.05" in msg
    for s in (cpsat, milp, lagrange):
        assert s.solve(p.replace(budget=1.0)).status == "infeasible"
    msg = diagnose(p.replace(latency_cap=1.5))
    assert "latency cap 1.5 s" in msg and "2" in msg
    assert diagnose(p.replace(energy_cap=0.1)).startswith("energy cap 0.1 J")
    assert diagnose(p) is None


def test_cpsat_reports_scaling_and_is_deterministic():
    rng = np.random.default_rng(3)
    G, C, V, L = 60, 4, 3, 6
    p = Problem(count=rng.integers(1, 5, G), group_domain=np.sort(rng.integers(0, L, G)), err=rng.lognormal(0, 1, (G, C)),
                energy_dyn=rng.uniform(1, 2, (G, C)), lat=rng.uniform(1, 2, (L, V)), voltage=[0.8, 0.9, 1.0],
                v0=0.9, leak_w=[0.1, 0.1, 0.2], compat=rng.random((C, V)) < 0.8, w_latency=1.0, w_energy=0.3,
                max_levels=2, switch_time_s=0.1)
    p = p.replace(budget=float((p.count * p.err.min(1)).sum() * 1.3), group_domain=np.sort(np.r_[np.arange(L), rng.integers(0, L, G - L)]),
                  compat=np.ones((C, V), bool))
    a = cpsat.solve(p, workers=2, seed=7, time_limit=20)
    b = cpsat.solve(p, workers=2, seed=7, time_limit=20)
    m = milp.solve(p, time_limit=20)
    assert a.status == b.status == "optimal"
    np.testing.assert_array_equal(a.assignment.counts, b.assignment.counts)
    assert a.objective == pytest.approx(m.objective, rel=1e-6)
    assert 0 < a.info["budget_band"] < 1e-9 * p.budget and a.info["objective_scaling_error"] >= 0
    lg = lagrange.solve(p)
    assert lg.bound <= a.objective * (1 + 1e-9) and lg.objective >= a.objective * (1 - 1e-9)


def test_infeasible_k_message():
    # two domains: codebook 0 (low error) runs only at level 0, codebook 1 only at level 1;
    # each domain's error needs its own level, K=1 cannot meet the budget
    p = Problem(count=[1, 1], group_domain=[0, 1], err=[[1.0, 9.0], [9.0, 1.0]], energy_dyn=np.ones((2, 2)),
                lat=[[1.0, 1.0], [1.0, 1.0]], voltage=[1.0, 1.0], leak_w=[0, 0], compat=np.eye(2, dtype=bool),
                normaliser=10.0, budget=2.0, max_levels=1)
    msg = diagnose(p)
    assert "K=1" in msg and "raise max_levels to >= 2" in msg
    assert cpsat.solve(p).status == "infeasible" and brute.solve(p).status == "infeasible"
    assert diagnose(p.replace(max_levels=2)) is None
