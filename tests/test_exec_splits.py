"""Split discipline (no text shared among calibration, tuning and test) and stream perplexity."""

from __future__ import annotations

import math

import pytest
import torch

from calib_helpers import write_json  # noqa: F401  (tests dir on sys.path)
from halo_opt.calibration.text import PARTS, calibration_batch, read_documents, split_documents, stdlib_documents
from halo_opt.errors import UserError
from halo_opt.execute.evaluate import AGGREGATE, describe_target, parse_target, stream_perplexity


def test_stdlib_parts_are_disjoint_and_cover_the_corpus():
    parts = {p: stdlib_documents(p) for p in PARTS}
    names = {p: {d.name for d in v} for p, v in parts.items()}
    texts = {p: {d.text for d in v} for p, v in parts.items()}
    for a, b in (("calibration", "tuning"), ("calibration", "test"), ("tuning", "test")):
        assert not names[a] & names[b] and not texts[a] & texts[b], (a, b)
    assert names["tuning"] | names["test"] == names["heldout"]
    assert names["calibration"] | names["heldout"] == names["all"]
    assert min(len(parts["tuning"]), len(parts["test"])) > 0.4 * len(parts["heldout"])


def test_token_batches_of_the_parts_share_no_sequence():
    from halo_opt.calibration.models import load_model

    tok = load_model("minilm").tokenizer
    rows = {}
    for p in ("calibration", "tuning", "test"):
        tb = calibration_batch(tok, None, 48, 64, 0, part=p)
        assert tb.spec["part"] == p
        rows[p] = {tuple(r[m.bool()].tolist()) for r, m in zip(tb.input_ids, tb.attention_mask)}
    assert not rows["calibration"] & rows["tuning"] and not rows["calibration"] & rows["test"] and not rows["tuning"] & rows["test"]


def test_user_text_files_split_by_whole_files(tmp_path):
    files = []
    for i in range(5):
        f = tmp_path / f"d{i}.txt"
        f.write_text(f"document {i} " * 40)
        files.append(f)
    docs = read_documents(files)
    tun, tst = split_documents(docs, "tuning"), split_documents(docs, "test")
    assert {d.name for d in tun}.isdisjoint({d.name for d in tst}) and len(tun) + len(tst) == 5 and tun and tst
    with pytest.raises(UserError, match="at least two"):
        split_documents(docs[:1], "test")


def test_targets_say_what_they_aggregate():
    assert "mean over the split's sequences" in describe_target(parse_target("cosine>=0.99"))
    assert "minimum" in describe_target(parse_target("cosine_min>=0.9"))
    assert "token-weighted" in describe_target(parse_target("ppl<=5%"))
    assert set(AGGREGATE) >= {"cosine_mean", "cosine_min", "ppl_increase", "top1_agreement"}


class Bigram(torch.nn.Module):
    def __init__(self, V=11):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Embedding(V, 6)
        self.out = torch.nn.Linear(6, V)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, ids):
        h = torch.cumsum(self.emb(ids), 1)          # depends on the whole window's past
        return self.out(h)


def test_stream_perplexity_is_non_overlapping_windows_against_brute_force():
    m = Bigram().double()                             # float64: batched and single-window forwards agree to rounding
    ids = torch.randint(0, 11, (103,), generator=torch.Generator().manual_seed(1))
    r = stream_perplexity(m, ids, 10, lambda mod, b: mod(b["input_ids"]), batch_size=3)
    assert r["windows"] == 10 and r["tokens_scored"] == 90
    nll = 0.0
    for w in range(10):                               # each window alone, its first token context only
        x = ids[w * 10:(w + 1) * 10]
        with torch.no_grad():
            lp = torch.log_softmax(m(x[None]).double()[0], -1)
        nll -= sum(float(lp[t, x[t + 1]]) for t in range(9))
    assert r["perplexity"] == pytest.approx(math.exp(nll / 90), rel=1e-12)
    assert stream_perplexity(m, ids, 10, lambda mod, b: mod(b["input_ids"]), max_windows=2)["tokens_scored"] == 18
    with pytest.raises(UserError, match="fewer than one window"):
        stream_perplexity(m, ids[:5], 10)


def test_perplexity_cli_on_a_tiny_causal_lm(tmp_path, capsys):
    from calib_helpers import TEXT, tiny_hf
    from halo_opt.cli import main

    folder = tiny_hf("llama", tmp_path / "llama")
    (tmp_path / "a.txt").write_text(TEXT)
    main(["perplexity", "--model", str(folder), "--text", str(tmp_path / "a.txt"), "--context-len", "32", "--max-windows", "3"])
    out = capsys.readouterr().out
    assert "float: perplexity" in out and "93 tokens (3 windows x 32" in out
    with pytest.raises(SystemExit) as e:
        main(["perplexity", "--model", "minilm", "--text", str(tmp_path / "a.txt")])
    assert e.value.code == 2
