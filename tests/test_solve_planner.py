"""The planner stage (:func:`halo_opt.solve.planner.plan`): one recipe, typed plan files,
byte-identical output for the same inputs and seed, one-line refusals."""

from __future__ import annotations

import pytest

from halo_opt.cli import main
from halo_opt.errors import UserError
from halo_opt.paths import formulations_dir
from halo_opt.planfile import PlanFile, load_plan, validate
from halo_opt.solve.build import build_problem
from halo_opt.solve.planner import plan
from halo_opt.solve.problem import evaluate
from halo_opt.solve.scenario import load_scenario
from halo_opt.solve.synthetic import write_costs


@pytest.fixture(scope="module")
def costs(tmp_path_factory):
    return write_costs(tmp_path_factory.mktemp("c") / "costs", "tiny", n_codebooks=5, n_levels=4, seed=2)


@pytest.mark.parametrize("goal", ["energy", "performance"])
def test_same_inputs_and_seed_give_identical_plan_bytes(costs, tmp_path, goal):
    """Two CLI runs, same scenario, costs and seed: the same plan.json, byte for byte (cpsat on
    one thread under a deterministic time limit; no wall times in the file)."""
    sc = str(formulations_dir() / f"{goal}.toml")
    outs = []
    for k in range(2):
        out = tmp_path / f"plan{k}.json"
        try:
            main(["plan", "--scenario", sc, "--costs", str(costs), "--out", str(out), "--seed", "3", "--time-limit", "20"])
        except SystemExit as e:
            assert e.code in (0, None)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert b"wall_s" not in outs[0]


def test_plan_is_typed_and_matches_the_solve(costs, tmp_path):
    sc = load_scenario(formulations_dir() / "balanced.toml")
    p = build_problem(costs, sc)
    pl = plan(p, "cpsat", costs=costs, scenario=sc.to_dict(), time_limit=20)
    assert isinstance(pl.file, PlanFile) and pl.result.has_plan
    ev = evaluate(p, pl.result.assignment)
    assert pl.file.predicted.error == ev.error and pl.file.solver.status == pl.result.status
    pl.save(tmp_path / "p.json")
    assert load_plan(tmp_path / "p.json", costs) == pl.file


def test_infeasible_problem_refused_with_the_diagnosis(costs):
    sc = load_scenario(formulations_dir() / "energy.toml").with_overrides(budget=1e-12)
    p = build_problem(costs, sc)
    with pytest.raises(UserError, match="raise --budget to >="):
        plan(p, "cpsat", costs=costs, time_limit=5)
    soft = plan(p, "cpsat", costs=costs, time_limit=5, strict=False)
    assert not soft.ok and soft.result.status == "infeasible" and "budget" in soft.reason


def test_plan_file_validation_names_the_problem(costs, tmp_path):
    sc = load_scenario(formulations_dir() / "energy.toml")
    d = plan(build_problem(costs, sc), "greedy", costs=costs, scenario=sc.to_dict(), time_limit=5).to_dict()
    with pytest.raises(UserError, match="format_version"):
        validate({k: v for k, v in d.items() if k != "format_version"})
    with pytest.raises(UserError, match="tile_codebook"):
        validate(d | {"tile_codebook": ["nope"] * len(d["tile_codebook"])})
    with pytest.raises(UserError, match="domains"):
        validate(d | {"domains": [{"domain": "x", "layers": [], "level": "nowhere"}]})
    with pytest.raises(UserError, match="other cost tables"):
        (tmp_path / "q.json").write_text(__import__("json").dumps(d | {"meta": d["meta"] | {"costs_sha256": "0"}}))
        load_plan(tmp_path / "q.json", costs)
