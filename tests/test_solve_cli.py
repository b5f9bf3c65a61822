"""Cost folder (contract §4) → Problem, scenario validation, `halo-opt plan` / `pareto` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from halo_opt.cli import main
from halo_opt.errors import UserError
from halo_opt.paths import formulations_dir
from halo_opt.solve.build import build_problem
from halo_opt.solve.plan import read_plan
from halo_opt.solve.problem import Assignment, evaluate
from halo_opt.solve.scenario import Scenario, load_scenario
from halo_opt.solve.synthetic import write_costs


@pytest.fixture(scope="module")
def costs(tmp_path_factory):
    d = write_costs(tmp_path_factory.mktemp("c") / "costs", "tiny", n_codebooks=5, n_levels=4, seed=1)
    t = pd.read_parquet(d / "tiles.parquet")  # duplicate some tiles' errors so grouping has work to do
    e = pd.read_parquet(d / "errors.parquet")
    same = t.index[(t["layer"] == t["layer"].iloc[0])][:3]
    e.loc[same, e.columns[1:]] = e.loc[same[0], e.columns[1:]].to_numpy()
    e.to_parquet(d / "errors.parquet", index=False)
    return d


def test_build_problem_follows_contract(costs):
    p = build_problem(costs, Scenario(budget=0.05, objective="energy"))
    tiles = pd.read_parquet(costs / "tiles.parquet")
    errs = pd.read_parquet(costs / "errors.parquet")
    cbs = json.loads((costs / "codebooks.json").read_text())["codebooks"]
    meta = json.loads((costs / "meta.json").read_text())
    assert p.n_tiles == len(tiles) and p.G < len(tiles)  # duplicates grouped
    assert p.L == tiles["layer"].nunique() and p.budget == pytest.approx(0.05 * meta["normaliser"])
    np.testing.assert_allclose(p.err[p.tile_group], errs[p.codebook_names].to_numpy())
    # energy of "everything full at nominal" from the contract's formula
    a = Assignment.from_choice(p, np.zeros(p.G, int), np.zeros(p.L, int))
    ev = evaluate(p, a)
    lat = pd.read_parquet(costs / "latency.parquet")
    lat_nom = lat[lat["level"] == "nominal"]["seconds"].sum()
    leak = json.loads((costs / "levels.json").read_text())["levels"][0]["leak_power_w"]
    want = (tiles["macs"] * cbs[0]["energy_fj"] * 1e-15).sum() + leak * lat_nom
    assert ev.energy == pytest.approx(want, rel=1e-12) and ev.latency == pytest.approx(lat_nom, rel=1e-12)


def test_tie_groups_and_granularity(costs):
    sc = load_scenario(formulations_dir() / "performance.toml")
    p = build_problem(costs, sc)
    assert p.L == 2 * 3  # per block: {q,k,v}, {gate,up}, down
    assert ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj"] in p.domain_layers
    assert build_problem(costs, sc.with_overrides(granularity="block", tie_groups=[])).L == 2
    assert build_problem(costs, sc.with_overrides(granularity="model")).L == 1
    b4 = build_problem(costs, load_scenario(formulations_dir() / "baseline_int4.toml"))
    assert b4.codebook_names == ["int4"] and b4.level_names == ["nominal"] and math.isinf(b4.budget)


def test_scenario_errors(tmp_path, costs):
    f = tmp_path / "s.toml"
    f.write_text('budget = 0.01\nobjective = "latency"\nmax_level = 2\n')
    with pytest.raises(UserError, match="unknown key 'max_level'; did you mean 'max_levels'"):
        load_scenario(f)
    f.write_text('budget = 0.01\nobjective = "latency\n')
    with pytest.raises(UserError, match="TOML syntax error.*line 2"):
        load_scenario(f)
    f.write_text('budget = 0.01\ncodebooks = ["full", "nope"]\n')
    with pytest.raises(UserError, match="unknown codebook 'nope'; valid: full"):
        build_problem(costs, load_scenario(f))
    f.write_text('budget = 0.01\nobjective = "speed"\n')
    with pytest.raises(UserError, match="objective 'speed'"):
        load_scenario(f)


def _cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_plan(tmp_path, costs, capsys):
    sc = str(formulations_dir() / "performance.toml")
    out = tmp_path / "plan.json"
    code, so, se = _cli(["plan", "--scenario", sc, "--costs", str(costs), "--solver", "cpsat", "--out", str(out),
                         "--budget", "0.05", "--time-limit", "20", "--workers", "1"], capsys)
    assert code == 0, se
    plan = read_plan(out, costs)
    assert plan["solver"]["status"] == "optimal" and len(plan["tile_codebook"]) == len(pd.read_parquet(costs / "tiles.parquet"))
    assert plan["predicted"]["error_rel"] <= 0.05 * (1 + 1e-9)
    assert set(plan["tile_codebook"]) <= set(plan["codebooks"]) and {d["level"] for d in plan["domains"]} <= set(plan["levels"])
    assert len({d["level"] for d in plan["domains"]}) <= 2 and plan["meta"]["model_sha256"].startswith("synthetic")
    code, _, se = _cli(["plan", "--scenario", sc, "--costs", str(costs), "--out", str(tmp_path / "x.json"), "--budget", "1e-9"], capsys)
    assert code == 2 and se.count("\n") == 1 and "raise --budget to >=" in se
    assert not (tmp_path / "x.json").exists()
    code, _, se = _cli(["plan", "--scenario", sc, "--costs", str(tmp_path / "nope")], capsys)
    assert code == 2 and "not found" in se
    code, _, se = _cli(["plan", "--scenario", sc, "--costs", str(costs), "--solver", "gurobi"], capsys)
    assert code == 2 and "unknown solver 'gurobi'" in se


def test_cli_bad_flag_exit_2(costs, capsys):
    code, _, se = _cli(["plan", "--scenario", "x.toml", "--costs", str(costs), "--bogus"], capsys)
    assert code == 2 and se.count("\n") == 1


def test_cli_pareto(tmp_path, costs, capsys):
    sc = str(formulations_dir() / "energy.toml")
    code, so, se = _cli(["pareto", "--scenario", sc, "--costs", str(costs), "--solvers", "cpsat,lagrange,halo",
                         "--points", "4", "--out", str(tmp_path / "front"), "--workers", "2", "--time-limit", "10"], capsys)
    assert code == 0, se
    df = pd.read_parquet(tmp_path / "front" / "points.parquet")
    assert len(df) == 12 and (tmp_path / "front" / "pareto.png").stat().st_size > 1000
    ex = df[df["solver"] == "cpsat"].sort_values("budget")
    assert (ex["status"] == "optimal").all() and (np.diff(ex["objective"]) <= 1e-12 * ex["objective"].max()).all()
    for s in ("lagrange", "halo"):  # no heuristic beats the exact front at the same budget
        h = df[df["solver"] == s].sort_values("budget")
        ok = h["objective"].notna().to_numpy()
        assert (h["objective"].to_numpy()[ok] >= ex["objective"].to_numpy()[ok] * (1 - 1e-9)).all()
    assert not df.loc[df["solver"] == "cpsat", "dominated"].all()
    from halo_opt.planfile import load_plan

    for f, b in zip(df["plan"], df["budget"]):  # every point is a plan file of these costs, for its budget
        if f is not None:
            pl = load_plan(tmp_path / "front" / f, costs)
            assert pl.scenario["budget"] == b and pl.predicted.error_rel <= b * (1 + 1e-9)


def test_energy_cap_sweep(costs, tmp_path):
    from halo_opt.solve.pareto import sweep, write

    p = build_problem(costs, load_scenario(formulations_dir() / "performance.toml").with_overrides(budget=0.05))
    df, plans = sweep(p, ["cpsat", "lagrange"], points=4, param="energy_cap", time_limit=10, costs=costs)
    ex = df[df["solver"] == "cpsat"].sort_values("energy_cap")
    ok = ex["objective"].notna().to_numpy()
    assert ok[-1] and (ex["energy_j"][ok] <= ex["energy_cap"][ok] * (1 + 1e-9)).all()
    assert (np.diff(ex["objective"].to_numpy()[ok]) <= 1e-12).all()  # a looser cap never hurts latency
    write(tmp_path / "f", df, plans, p, param="energy_cap", meta={"scenario": "performance", "objective": "latency"})
    assert not (tmp_path / "f" / "pareto.png").exists()  # the stage writes data; the report draws
    from halo_opt.report import render

    assert render(tmp_path / "f") == [tmp_path / "f" / "pareto.png"] and (tmp_path / "f" / "pareto.png").stat().st_size > 1000


def test_fold_granularity_plan(tmp_path, costs, capsys):
    """granularity = "fold": a level per tile from tile_latency.parquet; the plan file records each
    tile's level and each layer's run order; every exact solver agrees; at one level per layer
    the fold problem prices a plan as the sum of its folds."""
    from halo_opt.execute.inputs import check_plan, load_costs as exec_costs
    from halo_opt.execute.validate import baseline_cost
    from halo_opt.solve import solve_hinted

    sc = load_scenario(formulations_dir() / "performance_fold.toml").with_overrides(budget=0.05)
    p = build_problem(costs, sc)
    tl = pd.read_parquet(costs / "tile_latency.parquet")
    assert p.fold and p.L == pd.read_parquet(costs / "tiles.parquet")["layer"].nunique() and not p.lat.any()
    full = Assignment.from_fold(p, np.eye(p.C, dtype=np.int64)[0][None, :, None] * np.eye(p.V, dtype=np.int64)[0][None, None, :] * p.count[:, None, None])
    ev = evaluate(p, full)  # every tile on full at the nominal level
    assert ev.latency == pytest.approx(tl[tl["level"] == "nominal"]["seconds"].sum(), rel=1e-12) and ev.switches == 0
    assert baseline_cost(exec_costs(costs), "int8", "fold")["latency_s"] == pytest.approx(ev.latency, rel=1e-12)
    rs = {s: solve_hinted(p, s, time_limit=20) for s in ("cpsat", "milp", "lagrange", "greedy", "halo_fold")}
    assert rs["cpsat"].status == rs["milp"].status == "optimal"
    assert rs["milp"].objective == pytest.approx(rs["cpsat"].objective, rel=1e-6)
    for r in rs.values():
        assert r.has_plan and r.objective >= rs["cpsat"].objective * (1 - 1e-9)
    out = tmp_path / "fold.json"
    code, so, se = _cli(["plan", "--scenario", str(formulations_dir() / "performance_fold.toml"), "--costs", str(costs),
                         "--budget", "0.05", "--out", str(out), "--time-limit", "20"], capsys)
    assert code == 0, se
    assert "fold granularity; workload synthetic-m256" in so
    pl = read_plan(out, costs)
    assert pl["granularity"] == "fold" and len(pl["tile_level"]) == p.n_tiles
    for d in pl["domains"]:
        assert d["runs"] and d["runs"][0] == d["level"]
    check_plan(pl, exec_costs(costs))
    code, _, se = _cli(["plan", "--scenario", str(formulations_dir() / "performance_fold.toml"), "--costs", str(costs),
                        "--solver", "relax", "--out", str(tmp_path / "x.json")], capsys)
    assert code == 2 and "does not support granularity" in se and not (tmp_path / "x.json").exists()


def test_fold_granularity_needs_fold_latencies(tmp_path, costs):
    import shutil

    d = tmp_path / "c"
    shutil.copytree(costs, d)
    (d / "tile_latency.parquet").unlink()
    with pytest.raises(UserError, match="needs per-fold latencies"):
        build_problem(d, Scenario(budget=0.01, granularity="fold"))
