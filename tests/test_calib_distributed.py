"""Calibration on several processes (gloo on CPU): bitwise the single-process folder; resume; errors."""

from __future__ import annotations

import json

import pytest
import torch
from calib_helpers import TEXT, dist_inputs, tiny_hf
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file

from halo_opt.calibration import calibrate, calibration_batch, load_calibration, load_hessian, load_model
from halo_opt.calibration.distributed import calibrate_world, layer_runs
from halo_opt.cli import main
from halo_opt.errors import UserError


@pytest.fixture()
def one_thread():
    """Every rank runs with the parent's torch thread count; CPU kernels' reduction order can depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_same_folder(a, b):
    (ma, la), (mb, lb) = load_calibration(a), load_calibration(b)
    assert la == lb and ma["n_tokens"] == mb["n_tokens"]
    for layer in la:
        x, y = load_hessian(a, layer["name"]), load_hessian(b, layer["name"])
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), (layer["name"], k)
    assert sorted(p.name for p in a.glob("hessians/*")) == sorted(p.name for p in b.glob("hessians/*"))


@pytest.mark.slow
def test_two_processes_give_the_single_process_folder_bitwise(tmp_path, one_thread):
    """`halo-opt calibrate --world 2` (Hessians split by layer, Fisher batches dealt round-robin) ==
    the plain single-process `calibrate`: every tensor, token count, layers.json and fisher.safetensors."""
    folder = tiny_hf("llama", tmp_path / "m")
    (tmp_path / "t.txt").write_text(TEXT)
    ad = load_model(str(folder))
    tb = calibration_batch(ad.tokenizer, [str(tmp_path / "t.txt")], 6, 16, 0, max_length=ad.max_length)
    calibrate(ad, tb, tmp_path / "one", batch_size=2, progress=False)
    main(["calibrate", "--model", str(folder), "--text", str(tmp_path / "t.txt"), "--sequences", "6", "--seq-len", "16",
          "--batch-size", "2", "--out", str(tmp_path / "two"), "--world", "2", "--no-progress"])
    assert_same_folder(tmp_path / "one", tmp_path / "two")
    fa, fb = load_file(str(tmp_path / "one/fisher.safetensors")), load_file(str(tmp_path / "two/fisher.safetensors"))
    assert fa.keys() == fb.keys() and len(fa) == 14
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    ma, mb = load_calibration(tmp_path / "one")[0], load_calibration(tmp_path / "two")[0]
    assert ma["fisher"]["loss"] == "nll" and ma["fisher"] == mb["fisher"] and mb["distributed"]["world"] == 2 and "distributed" not in ma
    assert not list((tmp_path / "two").glob("*partial*"))


def test_crashed_rank_is_reported_and_the_run_resumes(tmp_path, one_thread):
    args = {"kind": "two_layer", "sequences": 8, "seq_len": 7}
    ad, tb = dist_inputs(type("S", (), {"rank": 0})(), args)
    calibrate(ad, tb, tmp_path / "ref", batch_size=2, progress=False)
    kw = dict(batch_size=2, progress=False, checkpoint_every=1)
    with pytest.raises(RuntimeError, match="(?s)rank 1 failed.*injected crash"):  # fc2 is rank 1's layer
        calibrate_world(dist_inputs, args | {"crash_rank": 1, "crash_after": 3}, tmp_path / "run", 2, **kw)
    run = tmp_path / "run"
    assert not (run / "meta.json").exists() and (run / "partial.rank1.safetensors").is_file()
    calibrate_world(dist_inputs, args, run, 2, **kw)
    assert_same_folder(tmp_path / "ref", run)
    assert not list(run.glob("*partial*"))
    assert json.loads((run / "meta.json").read_text())["distributed"]["world"] == 2


def test_worker_user_error_is_one_line_and_bad_world_refused(tmp_path):
    with pytest.raises(UserError, match="rank 1 cannot read its inputs"):
        calibrate_world(dist_inputs, {"kind": "two_layer", "sequences": 4, "seq_len": 5, "bad_rank": 1}, tmp_path / "c", 2,
                        progress=False)
    assert not (tmp_path / "c" / "meta.json").exists()
    with pytest.raises(UserError, match="--world must be >= 1"):
        calibrate_world(dist_inputs, {"kind": "two_layer", "sequences": 4, "seq_len": 5}, tmp_path / "c", 0)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            calibrate_world(dist_inputs, {"kind": "two_layer", "sequences": 4, "seq_len": 5}, tmp_path / "c", 2, "cuda")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=30), st.integers(1, 9))
def test_layer_runs_are_contiguous_cover_and_balance(sizes, world):
    runs = layer_runs(sizes, world)
    assert len(runs) == world and sum(runs, []) == list(range(len(sizes)))  # contiguous, in order, each once
    total = sum(sizes)
    for r in runs:  # each run's cost exceeds the fair share by less than one item (its boundary items)
        assert sum(sizes[i] for i in r) <= total / world + max(sizes) + 1e-9
