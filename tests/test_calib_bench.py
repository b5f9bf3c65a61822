"""The calibration benchmark runs end to end at reduced size on CPU (no timing asserts)."""

import importlib.util
import json
from pathlib import Path

import torch


def test_bench_calib_small_llama_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("HALO_OPT_CACHE", str(tmp_path / "cache"))
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_calib.py"
    spec = importlib.util.spec_from_file_location("bench_calib", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    mod.main(["llama7b", "--small", "--codebooks", "1", "--json", str(tmp_path / "r.json")])
    torch.set_num_threads(threads)
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["tokens"] == 8 * 64 and [l["shape"] for l in res["layers"]] == [[256, 256], [688, 256], [256, 688]]
    assert res["hessian_flop"] == 2 * 512 * (256**2 + 256**2 + 688**2) and all(l["costs_s"] > 0 for l in res["layers"])
