"""Shared fixtures for the calibration/cost tests: tiny random HF models, a small MAC profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from halo_opt.calibration.models import minilm_path
from halo_opt.hardware.codebooks import Codebook, save_codebooks
from halo_opt.hardware.profile import MacProfile

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "Calibration text is plain English prose about "
        "weights, activations, tiles and codebooks; every sentence adds a few more tokens. ") * 6


def tiny_hf(kind: str, folder: Path) -> Path:
    """Save a tiny random ``llama``/``opt``/``gpt2`` causal LM (with MiniLM's tokenizer) to ``folder``."""
    import transformers as tf

    vocab = 30522
    with torch.random.fork_rng():  # HF init draws from the global RNG: seed it locally, restore after
        torch.manual_seed(0)
        model = _build(tf, kind, vocab)
    model.save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(folder)
    return folder


def _build(tf, kind: str, vocab: int):
    if kind == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = tf.LlamaForCausalLM(cfg)
    elif kind == "opt":
        cfg = tf.OPTConfig(vocab_size=vocab, hidden_size=32, ffn_dim=48, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=64, word_embed_proj_dim=32)
        model = tf.OPTForCausalLM(cfg)
    elif kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64)
        model = tf.GPT2LMHeadModel(cfg)
    else:
        raise ValueError(kind)
    return model


def small_profile(folder: Path, books: list[tuple[str, list[int]]] | None = None) -> Path:
    """A 4-bit signed MAC profile (codes -8..7) with delay/energy growing with |code|, plus codebooks."""
    codes = np.arange(-8, 8)
    delay = 300.0 + 20 * np.abs(codes) + 5 * (codes < 0)
    prof = MacProfile(pd.DataFrame({"code": codes, "delay_static_ps": delay, "delay_float_ps": delay * 0.9,
                                    "energy_fj": 50.0 + 3 * np.abs(codes)}), {"v0": 1.0, "leakage_w": 2e-6})
    prof.save(folder)
    books = books or [("full", list(range(-8, 8))), ("c3", [-1, 0, 1]), ("pow2", [-8, -4, -2, -1, 0, 1, 2, 4]),
                      ("c5", [-2, -1, 0, 1, 2])]
    save_codebooks(folder / "codebooks.json", [Codebook.from_codes(n, c, prof) for n, c in books])
    return folder


class TwoLayer(nn.Module):
    """Embedding -> Linear(8,6) -> ReLU -> Linear(6,5): a custom module with token inputs."""

    def __init__(self, vocab: int = 50, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(vocab, 8)
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.emb(ids))))


def two_layer_forward(m, batch):
    return m(batch["input_ids"])


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def dist_inputs(shard, a: dict):
    """Adapter + tokens for the distributed tests, rebuilt in every process from plain values:
    ``a = {"kind": "two_layer" | "hf", "folder": hf model folder, "sequences", "seq_len"}``."""
    from halo_opt.calibration import from_module, load_model
    from halo_opt.calibration.text import TokenBatch, calibration_batch

    from halo_opt.errors import UserError

    if a.get("bad_rank") == shard.rank:
        raise UserError(f"rank {shard.rank} cannot read its inputs (injected)")
    if a["kind"] == "two_layer":
        g = torch.Generator().manual_seed(0)
        S, L = a["sequences"], a["seq_len"]
        ids = torch.randint(0, 50, (S, L), generator=g)
        mask = torch.ones(S, L, dtype=torch.int64)
        mask[1, L - 3:] = 0
        ids[mask == 0] = 0
        fwd = two_layer_forward
        if a.get("crash_rank") == shard.rank:  # this rank dies in its forward after ``crash_after`` batches
            seen = [0]

            def fwd(m, batch):
                if seen[0] == a["crash_after"]:
                    raise RuntimeError("injected crash")
                seen[0] += 1
                return two_layer_forward(m, batch)
        return from_module(TwoLayer(), fwd), TokenBatch(ids, mask, {"seed": 0})
    ad = load_model(a["folder"])
    return ad, calibration_batch(ad.tokenizer, [TEXT_FILE(a["folder"])], a["sequences"], a["seq_len"], 0, max_length=ad.max_length)


def TEXT_FILE(folder) -> str:
    p = Path(folder) / "calib.txt"
    if not p.is_file():
        p.write_text(TEXT)
    return str(p)


def fp_profile(folder: Path, fmt: str = "fp4_e2m1", books: list[tuple[str, list[int]]] | None = None,
               v0: float = 1.0) -> Path:
    """A SYNTHETIC floating-point MAC profile folder (``profile.json`` meta with ``format`` and a
    ``codebooks.json`` with ``meta.format``): made-up per-code delay (grows with the exponent and
    the mantissa's one bits) and energy, for the numeric side's tests until real FP profiles exist."""
    from halo_opt.artifacts import write_json
    from halo_opt.formats import get_format

    f = get_format(fmt)
    codes = f.codes()
    e = (codes >> f.mbits) & ((1 << f.ebits) - 1)
    m = np.array([bin(int(c) & ((1 << f.mbits) - 1)).count("1") for c in codes])
    delay = dict(zip(codes.tolist(), (250.0 + 12 * e + 30 * m).tolist()))
    energy = dict(zip(codes.tolist(), (40.0 + 2 * e + 5 * m).tolist()))
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "profile.json", {"meta": {"v0": v0, "leakage_w": 2e-6, "format": f.name, "synthetic": True}})
    books = books or [("full", codes.tolist())]
    save_codebooks(folder / "codebooks.json", [Codebook(n, tuple(sorted(c)), max(delay[x] for x in c),
                                                        float(np.mean([energy[x] for x in c])), "synthetic") for n, c in books],
                   {"format": f.name, "synthetic": True})
    return folder
