"""Model adapters and calibration text: MiniLM, tiny LLaMA/OPT/GPT-2 folders, bad inputs."""

import json

import pytest
import torch
from calib_helpers import TEXT, tiny_hf

from halo_opt.calibration import calibration_batch, load_model, read_documents, stdlib_documents, token_batch
from halo_opt.calibration.models import mean_pool
from halo_opt.errors import UserError


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def test_minilm_planned_layers_and_embedding(minilm):
    names = [l.name for l in minilm.linears]
    assert len(names) == 36 and names[0] == "encoder.layer.0.attention.self.query"
    assert not any("pooler" in n for n in names)
    fc2 = minilm.layer("encoder.layer.5.output.dense")
    assert (fc2.in_features, fc2.out_features) == (1536, 384) and fc2.weight().shape == (384, 1536)
    batch = minilm.tokenizer(["a short sentence", "another, slightly longer sentence here"], padding=True, return_tensors="pt")
    emb = minilm.forward(dict(batch))
    assert emb.shape == (2, 384)
    # mean pooling ignores padding: the shorter sentence alone gives the same embedding
    alone = minilm.tokenizer(["a short sentence"], return_tensors="pt")
    assert torch.allclose(minilm.forward(dict(alone))[0], emb[0], atol=1e-5)
    sha = minilm.sha256()
    assert len(sha) == 64 and load_model("minilm", include=r"layer\.0\.").sha256() != sha


def test_layer_selection_and_errors(minilm, tmp_path):
    sel = load_model("minilm", layers=["encoder.layer.1.intermediate.dense"])
    assert [l.name for l in sel.linears] == ["encoder.layer.1.intermediate.dense"]
    only_attn = load_model("minilm", include=r"attention\.self", exclude=r"\.value$")
    assert len(only_attn.linears) == 12
    with pytest.raises(UserError, match="did you mean"):
        load_model("minilm", layers=["encoder.layer.1.intermediate.dens"])
    with pytest.raises(UserError, match="no linear layer matches"):
        load_model("minilm", include="nothing-here")
    with pytest.raises(UserError, match="not planned"):
        minilm.layer("pooler.dense")


def test_bad_model_folders(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5/config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UserError, match="not supported"):
        load_model(tmp_path / "t5")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights/config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(UserError, match="cannot load"):
        load_model(tmp_path / "noweights")


def test_unpulled_model_names_the_pull_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HALO_OPT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="halo-opt models pull smollm2-135m"):
        load_model("smollm2-135m")


@pytest.mark.parametrize("kind,first,n", [("llama", "model.layers.0.self_attn.q_proj", 14),
                                          ("opt", "model.decoder.layers.0.self_attn.k_proj", 12),
                                          ("gpt2", "transformer.h.0.attn.c_attn", 8)])
def test_tiny_causal_lms_load_offline(tmp_path, kind, first, n):
    ad = load_model(tiny_hf(kind, tmp_path / kind))
    assert len(ad.linears) == n and first in [l.name for l in ad.linears]
    for lin in ad.linears:
        assert lin.weight().shape == (lin.out_features, lin.in_features)
    tb = token_batch(ad.tokenizer, read_documents([_text(tmp_path)]), 3, 16, seed=0, max_length=ad.max_length)
    assert ad.forward(next(tb.batches(3))).shape == (3, 16, 30522)


def _text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(TEXT)
    return p


def test_text_files_and_empty_file(tmp_path, minilm):
    tb = token_batch(minilm.tokenizer, read_documents([_text(tmp_path)]), 4, 32, seed=1)
    assert tb.input_ids.shape == (4, 32) and (tb.input_ids[:, 0] == 101).all()      # [CLS] first
    again = token_batch(minilm.tokenizer, read_documents([_text(tmp_path)]), 4, 32, seed=1)
    assert torch.equal(tb.input_ids, again.input_ids) and tb.sha256() == again.sha256()
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match="empty"):
        read_documents([tmp_path / "empty.txt"])
    with pytest.raises(UserError, match="not found"):
        read_documents([tmp_path / "nope.txt"])
    with pytest.raises(UserError, match="only"):
        token_batch(minilm.tokenizer, read_documents([_text(tmp_path)]), 500, 32, seed=1)
    with pytest.raises(UserError, match="exceeds"):
        token_batch(minilm.tokenizer, read_documents([_text(tmp_path)]), 1, 1024, seed=1, max_length=512)


def test_stdlib_split_is_disjoint_and_seeded(minilm):
    cal, held = stdlib_documents("calibration"), stdlib_documents("heldout")
    names_c, names_h = {d.name for d in cal}, {d.name for d in held}
    assert names_c and names_h and not names_c & names_h
    assert {d.name for d in stdlib_documents("all")} == names_c | names_h
    assert {d.name for d in stdlib_documents("heldout", split_seed=1)} != names_h
    tb = calibration_batch(minilm.tokenizer, None, 8, 64, seed=0)
    tb2 = calibration_batch(minilm.tokenizer, None, 8, 64, seed=0)
    assert torch.equal(tb.input_ids, tb2.input_ids) and tb.spec["source"] == "python-stdlib-docstrings"
    assert not torch.equal(calibration_batch(minilm.tokenizer, None, 8, 64, seed=1).input_ids, tb.input_ids)


def test_stdlib_file_list_equals_a_full_recursive_glob():
    """The pruned walk lists what filtering a full ``rglob`` gives, in the same order (the oracle)."""
    import sysconfig
    from pathlib import Path

    from halo_opt.calibration import text

    root = Path(sysconfig.get_paths()["stdlib"])
    want = [(".".join(p.relative_to(root).with_suffix("").parts), p) for p in sorted(root.rglob("*.py"))
            if not text._SKIP_DIRS.intersection(p.relative_to(root).parts[:-1]) and not p.name.startswith("test_")]
    assert list(text._stdlib_files.__wrapped__()) == want and len(want) > 100


def test_mean_pool_weights_only_unmasked():
    h = torch.arange(12.0).reshape(1, 3, 4)
    assert torch.equal(mean_pool(h, torch.tensor([[1, 1, 0]])), h[0, :2].mean(0, keepdim=True))
