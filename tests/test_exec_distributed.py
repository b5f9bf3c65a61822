"""Plan execution with the layers spread over processes (gloo on CPU): bitwise the single-process codes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from calib_helpers import TEXT, tiny_hf
from safetensors.torch import load_file

from halo_opt.calibration import calibrate, calibration_batch, load_hessian, load_model
from halo_opt.cli import main
from halo_opt.errors import UserError
from halo_opt.execute import synthetic as syn
from halo_opt.execute.distributed import assign_layers, with_pool


@pytest.mark.slow
def test_gptq_on_two_processes_equals_one_process_bitwise(tmp_path):
    """`halo-opt execute --world 2 --method gptq` (plan + an int4-gptq baseline: two jobs) writes the same
    codes and scales, and the same accuracy, as `--world 1`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers take the parent's thread count
    try:
        folder = tiny_hf("llama", tmp_path / "m")
        (tmp_path / "t.txt").write_text(TEXT)
        ad = load_model(str(folder))
        tb = calibration_batch(ad.tokenizer, [str(tmp_path / "t.txt")], 4, 16, 0, max_length=ad.max_length)
        calibrate(ad, tb, tmp_path / "calib", batch_size=2, progress=False, fisher=False)
        W = {l.name: l.weight() for l in ad.linears}
        syn.write_costs(tmp_path / "costs", W, {k: load_hessian(tmp_path / "calib", k)["H"] for k in W}, (16, 16), 0.01)
        plan = syn.make_plan(tmp_path / "costs", lambda g: ["full", "c9", "pow2"][g % 3])
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        rep = {}
        for w in (1, 2):
            main(["execute", "--plan", str(tmp_path / "plan.json"), "--costs", str(tmp_path / "costs"), "--calib",
                  str(tmp_path / "calib"), "--model", str(folder), "--out", str(tmp_path / f"ex{w}"), "--sequences", "2",
                  "--seq-len", "16", "--baselines", "int4-gptq", "--export", "safetensors", "--no-progress", "--method", "gptq",
                  "--world", str(w), "--text", str(tmp_path / "t.txt")])
            rep[w] = json.loads((tmp_path / f"ex{w}/report.json").read_text())
    finally:
        torch.set_num_threads(n)
    a, b = (load_file(str(tmp_path / f"ex{w}/export-safetensors/codes.safetensors")) for w in (1, 2))
    assert a.keys() == b.keys() and len(a) >= 2 * 14
    assert all(torch.equal(a[k], b[k]) for k in a)
    for m in ("plan-gptq", "int4-gptq"):
        assert rep[1]["methods"][m] == rep[2]["methods"][m]
    assert rep[1]["layers"] == rep[2]["layers"]


def test_failed_flow_stops_the_workers(tmp_path):
    syn.write_costs(tmp_path / "costs", {"a": torch.ones(4, 4)}, {"a": torch.eye(4, dtype=torch.float64)}, (4, 4))

    def flow(pool, device):
        raise UserError("rank 0 gave up")

    with pytest.raises(UserError, match="rank 0 gave up"):
        with_pool(2, "cpu", tmp_path / "costs", tmp_path / "calib", "minilm", flow)


def test_layer_assignment_balances_and_is_deterministic():
    shapes = {"q": (64, 64), "k": (16, 64), "up": (128, 64), "down": (64, 128), "o": (64, 64)}
    c = type("C", (), {})()
    c.layers = pd.DataFrame([dict(layer=n, out_features=N, in_features=K) for n, (N, K) in shapes.items()])
    c.tiles = pd.DataFrame([dict(layer=n) for n in shapes])
    for world in (1, 2, 3, 7):
        a = assign_layers(c, world)
        assert set(a) == set(shapes) and set(a.values()) <= set(range(world)) and a == assign_layers(c, world)
    cost = {n: N * K * K + K ** 3 for n, (N, K) in shapes.items()}
    a = assign_layers(c, 2)
    load = [sum(cost[n] for n in a if a[n] == r) for r in range(2)]
    assert max(load) - min(load) <= max(cost.values())  # LPT: imbalance below the largest job
    assert a["down"] != a["up"]  # the two largest go to different ranks
