"""`halo-opt execute` end to end on the embedded MiniLM (two planned layers, small held-out text)."""

from __future__ import annotations

import json

import pytest
import torch

from halo_opt.cli import main
from halo_opt.execute import synthetic as syn

TEXT = [
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch and the sun sets slowly behind the hills. " * 3,
    "Quantization maps floating point weights to a small set of integer codes with a scale per row and tile of the matrix. " * 3,
    "A systolic array streams activations through a grid of multiply accumulate units that hold their weights in place. " * 3,
]
LAYERS = ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "encoder.layer.5.attention.self.value"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from halo_opt.calibration.models import load_model
    from halo_opt.calibration.text import calibration_batch

    tmp = tmp_path_factory.mktemp("cli")
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
    plan = syn.make_plan(tmp / "costs", lambda g: ["full", "c9", "pow2"][g % 3])
    (tmp / "plan.json").write_text(json.dumps(plan))
    return tmp, texts, plan


def _args(tmp, texts, plan="plan.json", out="out"):
    a = ["execute", "--plan", str(tmp / plan), "--costs", str(tmp / "costs"), "--calib", str(tmp / "calib"), "--model", "minilm",
         "--out", str(tmp / out), "--sequences", "4", "--seq-len", "32", "--baselines", "", "--export", "safetensors", "--no-progress"]
    for t in texts:
        a += ["--text", t]
    return a


def test_execute_cli_writes_report_and_exports(folders, capsys):
    tmp, texts, plan = folders
    main(_args(tmp, texts) + ["--method", "rtn"])
    out = tmp / "out"
    rep = json.loads((out / "report.json").read_text())
    assert [r["layer"] for r in rep["layers"]] == LAYERS
    assert rep["timing"]["miss_timing"] == 0
    m = rep["methods"]["plan-rtn"]["metrics"]
    assert 0.5 < m["cosine_mean"] < 1.0 and set(rep["methods"]) == {"plan-rtn"}
    for f in ("report.md", "error_per_layer.png", "accuracy_vs_cost.png", "plan.json", "export-safetensors/codes.safetensors"):
        assert (out / f).is_file(), f
    assert "Spearman" in capsys.readouterr().out
    assr = rep["validation"]["spearman"]
    assert -1 <= assr <= 1


def test_execute_cli_rejects_foreign_plans(folders, capsys):
    tmp, texts, plan = folders
    for name, meta, msg in (("other_costs.json", {"costs_sha256": "0" * 64}, "another cost folder"),
                            ("other_model.json", {"model_sha256": "ab" * 32}, "another model")):
        (tmp / name).write_text(json.dumps(dict(plan, meta=dict(plan["meta"], **meta))))
        with pytest.raises(SystemExit) as e:
            main(_args(tmp, texts, name, "bad"))
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: transformers' load progress
        assert err.startswith("error: ") and msg in err
        assert not (tmp / "bad").exists()
    with pytest.raises(SystemExit) as e:
        main(_args(tmp, texts, "missing.json", "bad"))
    assert e.value.code == 2 and not (tmp / "bad").exists()


def test_tune_cli_tunes_on_tuning_split_and_reports_test_split(folders, capsys):
    from halo_opt.paths import formulations_dir

    tmp, texts, _ = folders
    a = ["tune", "--target", "cosine>=0.5", "--scenario", str(formulations_dir() / "performance.toml"), "--costs", str(tmp / "costs"),
         "--calib", str(tmp / "calib"), "--model", "minilm", "--out", str(tmp / "tuned"), "--sequences", "2", "--seq-len", "32",
         "--baselines", "", "--export", "none", "--iters", "2", "--solver", "greedy", "--no-progress"]
    for t in texts:
        a += ["--text", t]
    main(a)
    out = capsys.readouterr().out
    assert "enforced on the tuning split: cosine_mean >= 0.5: mean over the split's sequences" in out
    rec = json.loads((tmp / "tuned" / "tune.json").read_text())
    assert rec["tuning_text"]["part"] == "tuning" and rec["test_text"]["part"] == "test"
    assert set(rec["tuning_metrics"]) == set(rec["test_metrics"]) and isinstance(rec["meets_on_test"], bool)
    tuning_files = set(rec["tuning_text"]["files"])  # the files given; the split picks whole files
    from halo_opt.calibration.text import read_documents, split_documents
    docs = read_documents(texts)
    assert {d.name for d in split_documents(docs, "tuning")}.isdisjoint({d.name for d in split_documents(docs, "test")})
    assert tuning_files == set(texts)
