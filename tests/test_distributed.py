"""`halo_opt.distributed` and its callers: a Pareto sweep and a closed-loop study give the same
points (plan files byte for byte) serially and on a local Ray instance; a rerun resumes from the
kept points, recomputing only the missing ones, with the same result."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from halo_opt.cli import main
from halo_opt.distributed import LAST_RUN, THREAD_ENV, Job, Store, _environ, probe, run_jobs
from halo_opt.errors import UserError
from halo_opt.paths import formulations_dir
from halo_opt.solve.synthetic import write_costs


@pytest.fixture(scope="module")
def costs(tmp_path_factory):
    return write_costs(tmp_path_factory.mktemp("c") / "costs", "tiny", n_codebooks=5, n_levels=4, seed=2)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    with _environ(THREAD_ENV):  # as run_jobs starts it (one instance for the module's tests)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def test_local_ray_started_by_run_jobs_has_single_threaded_workers_and_restores_the_environment(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # the module's shared instance is up (tests run out of order): not this path
        pytest.skip("Ray already initialised in this process")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    st = Store(tmp_path / "s")
    st.open({"probe": 1})
    run_jobs([Job(probe, {"store": str(st.dir), "key": f"w{i}"}, [f"w{i}"]) for i in range(2)], st, "local", 2, progress=False)
    recs = [st.get(f"w{i}") for i in range(2)]
    assert all(r["pid"] != os.getpid() for r in recs)
    assert [(r["OMP_NUM_THREADS"], r["MKL_NUM_THREADS"], r["torch_threads"]) for r in recs] == [("1", "1", 1)] * 2
    assert os.environ["OMP_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in os.environ  # the driver's, restored
    assert not ray.is_initialized()  # started and stopped by run_jobs
    assert LAST_RUN["engine"] == "local" and LAST_RUN["jobs"] == 2 and LAST_RUN["start_s"] > 0 and LAST_RUN["stop_s"] > 0
    run_jobs([Job(probe, {"store": str(st.dir), "key": "w0"}, ["w0"])], st, "local", 2, progress=False)
    assert LAST_RUN["jobs"] == 0 and LAST_RUN["start_s"] == 0  # all resumed: Ray not started


def _pareto(costs, out, *extra):
    try:
        main(["pareto", "--scenario", str(formulations_dir() / "energy.toml"), "--costs", str(costs), "--solvers",
              "cpsat,greedy", "--points", "5", "--chunks", "2", "--time-limit", "10", "--out", str(out), "--json", *extra])
    except SystemExit as e:
        assert e.code in (0, None)
    return _front(out)


def _front(out):
    df = pd.read_parquet(out / "points.parquet").drop(columns="wall_s")
    return df, {p.name: p.read_bytes() for p in sorted((out / "plans").glob("*.json"))}


def test_pareto_sweep_serial_and_on_ray_are_identical(costs, tmp_path, ray_local, capsys):
    df0, plans0 = _pareto(costs, tmp_path / "serial")
    df1, plans1 = _pareto(costs, tmp_path / "ray", "--ray", "local")
    pd.testing.assert_frame_equal(df0, df1)
    assert plans0 == plans1 and len(plans0) == int(df0["plan"].notna().sum()) >= 6
    assert len(list((tmp_path / "ray" / "points").glob("[!_]*.json"))) == 10  # one file per point


def test_pareto_rerun_skips_finished_points_and_gives_the_same_front(costs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "f"
    df0, plans0 = _pareto(costs, out)
    import halo_opt.solve.planner as planner

    calls, real = [], planner.plan
    monkeypatch.setattr(planner, "plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    _pareto(costs, out)
    assert calls == []  # everything finished: nothing solved again
    for k in ("cpsat-001", "greedy-004"):  # a point inside a warm-started chain, and a chain's last
        (out / "points" / f"{k}.json").unlink()
    capsys.readouterr()
    df1, plans1 = _pareto(costs, out)
    assert len(calls) == 2  # only the missing points; cpsat-002 still gets its hint from cpsat-001's plan
    pd.testing.assert_frame_equal(df0, df1)
    assert plans0 == plans1
    _pareto(costs, out, "--points", "4")  # another sweep in the same folder starts afresh
    assert len(list((out / "points").glob("[!_]*.json"))) == 8


def test_chains_in_one_process_share_the_built_problem(costs, tmp_path, monkeypatch):
    import numpy as np

    import halo_opt.solve.build as build
    import halo_opt.solve.pareto as pareto
    from halo_opt.solve.scenario import load_scenario

    sc = load_scenario(formulations_dir() / "energy.toml").to_dict()
    monkeypatch.setattr(pareto, "_PROBLEMS", type(pareto._PROBLEMS)())
    calls, real = [], build.build_problem
    monkeypatch.setattr(build, "build_problem", lambda *a, **k: calls.append(1) or real(*a, **k))
    st = Store(tmp_path / "s")
    st.open({"memo": 1})
    chain = dict(solver="greedy", param="budget", time_limit=5, seed=0, store=str(st.dir), costs=str(costs), scenario=sc)
    pareto._chain(values=[0.01, 0.02], keys=["greedy-000", "greedy-001"], **chain)
    pareto._chain(values=[0.05], keys=["greedy-002"], **chain)
    assert len(calls) == 1  # the second chain reused the first one's problem
    p = pareto.built_problem(costs, sc)
    assert len(calls) == 1 and not p.err.flags.writeable  # kept read-only: a job cannot change the next one's problem
    pareto.built_problem(costs, dict(sc, budget=0.5))
    pareto.built_problem(costs, dict(sc, budget=0.6))
    assert len(calls) == 3 and len(pareto._PROBLEMS) == pareto.PROBLEMS_KEPT
    fresh = Store(tmp_path / "fresh")
    fresh.open({"memo": 0})
    pareto._chain(values=[0.01, 0.02], keys=["greedy-000", "greedy-001"], **chain | {"store": str(fresh.dir)},
                  problem=real(costs, load_scenario(formulations_dir() / "energy.toml")))
    for k in ("greedy-000", "greedy-001"):
        a, b = st.get(k), fresh.get(k)
        a["row"].pop("wall_s"), b["row"].pop("wall_s")
        assert a["row"] == b["row"] and a["plan"] == b["plan"]
    assert np.isfinite(st.get("greedy-002")["row"]["objective"])


def test_sweep_refuses_ray_without_cost_folder(costs):
    from halo_opt.solve.build import build_problem
    from halo_opt.solve.pareto import sweep
    from halo_opt.solve.scenario import load_scenario

    p = build_problem(costs, load_scenario(formulations_dir() / "energy.toml"))
    with pytest.raises(UserError, match="needs the cost folder"):
        sweep(p, ["greedy"], points=3, ray="local")


# --- closed-loop study -------------------------------------------------------------------------------------

TEXT = [
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch and the sun sets slowly. " * 3,
    "Quantization maps floating point weights to a small set of integer codes with a scale per row and tile. " * 3,
    "A systolic array streams activations through a grid of multiply accumulate units that hold their weights. " * 3,
]
LAYERS = ["encoder.layer.0.attention.self.query", "encoder.layer.5.attention.self.value"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import torch

    from halo_opt.calibration.models import load_model
    from halo_opt.calibration.text import calibration_batch
    from halo_opt.execute import synthetic as syn

    tmp = tmp_path_factory.mktemp("study")
    texts = []
    for i, t in enumerate(TEXT):
        (tmp / f"t{i}.txt").write_text(t)
        texts.append(str(tmp / f"t{i}.txt"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ad = load_model("minilm")
        tb = calibration_batch(ad.tokenizer, texts, 4, 32, seed=1)
        lin = {l.name: l for l in ad.linears if l.name in LAYERS}
        H = syn.hessians({k: l.module for k, l in lin.items()}, lambda: [ad.forward(b) for b in tb.batches(4)])
        syn.write_calib(tmp / "calib", H)
        syn.write_costs(tmp / "costs", {k: l.weight() for k, l in lin.items()}, {k: h for k, (h, _) in H.items()}, (128, 384), 0.01)
    finally:
        torch.set_num_threads(n)
    return tmp, texts


#: a study point's own timings (the only fields that differ between runs)
TIMES = ("wall_s", "context_s")


def _study(folders, store, **kw):
    from halo_opt.closed_loop import tune_study

    tmp, texts = folders
    return tune_study(tmp / "costs", tmp / "calib", "minilm", ["performance", "energy"], ["greedy"], "cosine>=0.5",
                      store, lo=0.0, hi=0.5, iters=2, time_limit=5, heldout=2, seq_len=32, text=texts, progress=False, **kw)


def test_closed_loop_study_serial_and_on_ray_are_identical_and_resume(folders, tmp_path, ray_local, monkeypatch):
    serial = _study(folders, tmp_path / "serial")
    on_ray = _study(folders, tmp_path / "ray", ray="local")
    assert [(r["goal"], r["solver"]) for r in serial] == [("performance", "greedy"), ("energy", "greedy")]
    strip = lambda rs: json.dumps([{k: v for k, v in r.items() if k not in TIMES} for r in rs], sort_keys=True)
    assert strip(serial) == strip(on_ray)
    assert all("plan" in r and r["test_metrics"] for r in serial)
    import halo_opt.closed_loop as cl

    (tmp_path / "serial" / "energy-greedy.json").unlink()
    calls, real = [], cl.tune_budget
    monkeypatch.setattr(cl, "tune_budget", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _study(folders, tmp_path / "serial")
    assert len(calls) == 1 and strip(again) == strip(serial)


def test_study_points_in_one_process_share_the_loaded_context(folders, tmp_path, monkeypatch):
    import halo_opt.closed_loop as cl
    import halo_opt.execute.pipeline as pipeline

    calls, real = [], pipeline.context_from_folders
    monkeypatch.setattr(pipeline, "context_from_folders", lambda *a, **k: calls.append(1) or real(*a, **k))
    shared = _study(folders, tmp_path / "shared")
    assert len(calls) == 1 and cl._CONTEXTS == {}  # one load for both points; released at the end
    memo = cl.study_contexts
    monkeypatch.setattr(cl, "study_contexts", lambda *a: cl._CONTEXTS.clear() or memo(*a))  # a fresh load per point
    fresh = _study(folders, tmp_path / "fresh")
    assert len(calls) == 3
    strip = lambda rs: json.dumps([{k: v for k, v in r.items() if k not in TIMES} for r in rs], sort_keys=True)
    assert strip(shared) == strip(fresh)


def _square(store: str, key: str, x: int) -> None:
    Store(store).put(key, {"x": x * x, "wall_s": 0.0})


def test_run_jobs_progress_lines_and_errors(tmp_path, capsys):
    st = Store(tmp_path / "s")
    st.open({"a": 1})
    run_jobs([Job(_square, {"store": str(st.dir), "key": f"p{i}", "x": i}, [f"p{i}"]) for i in range(3)], st, progress=True,
             description="squares")
    err = capsys.readouterr().err.splitlines()
    assert [l.split("] ")[1] for l in err] == ["squares 1/3: p0 (0.0 s)", "squares 2/3: p1 (0.0 s)", "squares 3/3: p2 (0.0 s)"]
    assert [st.get(f"p{i}")["x"] for i in range(3)] == [0, 1, 4]
    assert st.open({"a": 1}) == 3 and st.open({"a": 2}) == 0  # another spec: a fresh store
    with pytest.raises(RuntimeError, match="without writing points"):
        run_jobs([Job(_square, {"store": str(st.dir), "key": "p0", "x": 0}, ["p0", "q"])], st, progress=False)


def test_study_cli_writes_points_and_summary(folders, tmp_path, capsys):
    tmp, texts = folders
    a = ["study", "--target", "cosine>=0.5", "--scenarios", "performance", "--solvers", "greedy", "--costs", str(tmp / "costs"),
         "--calib", str(tmp / "calib"), "--out", str(tmp_path / "s"), "--sequences", "2", "--seq-len", "32", "--iters", "2",
         "--budget-max", "0.5", "--no-progress", "--json"]
    for t in texts:
        a += ["--text", t]
    try:
        main(a)
    except SystemExit as e:
        assert e.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert [(p["goal"], p["solver"]) for p in out["points"]] == [("performance", "greedy")] and out["points"][0]["budget"] > 0
    assert (tmp_path / "s" / "points" / "performance-greedy.json").is_file() and (tmp_path / "s" / "study.json").is_file()


@pytest.mark.parametrize("change, says", [
    ({"--costs": "nowhere"}, "cost folder nowhere not found"),
    ({"--calib": "nowhere"}, "calibration folder nowhere not found"),
    ({"--budget-min": "0.6"}, "need 0 <= --budget-min < --budget-max"),
    ({"--workers": "0"}, "--workers must be at least 1"),
    ({"--iters": "0"}, "--threads and --iters must be at least 1"),
    ({"--target": "cosine>=1.5"}, "can never be met"),
    ({"--target": "accuracy>=0.9"}, "unknown metric 'accuracy'"),
])
def test_study_cli_bad_input_is_one_line_before_any_work(folders, tmp_path, capsys, change, says):
    tmp, _ = folders
    opts = {"--target": "cosine>=0.5", "--scenarios": "performance", "--solvers": "greedy", "--costs": str(tmp / "costs"),
            "--calib": str(tmp / "calib"), "--out": str(tmp_path / "s"), "--budget-max": "0.5", "--iters": "2"} | change
    with pytest.raises(SystemExit) as e:
        main(["study", *[x for kv in opts.items() for x in kv], "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "s").exists()  # no partial artifact
