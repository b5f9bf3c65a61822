"""Accuracy of a (quantized) model on held-out text, always relative to the float model.

* Causal LM: perplexity ``exp(Σ_t −log p(x_t | x_<t) / n)`` over the non-padding next tokens;
  ``ppl_increase = ppl / ppl_float − 1``.
* Encoder: mean-pooled sentence embeddings ``e = Σ_t m_t h_t / Σ_t m_t``; ``cosine_mean`` /
  ``cosine_min`` of ``cos(e_q, e_float)`` over sentences; ``top1_agreement`` = fraction of
  sentences whose nearest other sentence (cosine) is the same under both models (retrieval).

A batch is a dict of tensors (``input_ids``, ``attention_mask``); ``forward(model, batch)``
(the model adapter's) returns logits [B, T, V] (causal), or sentence embeddings [B, d] or token
states [B, T, d] (encoder; token states are mean-pooled here). Default forward: ``model(**batch)``
and its ``.logits`` / ``.last_hidden_state``. Targets are strings ``metric>=x`` / ``metric<=x`` over these metric names
(``ppl_increase<=5%`` accepts a percent sign).
"""

from __future__ import annotations

import math
import operator
import re
from typing import Callable, Iterable

import torch

from ..errors import UserError

Batch = dict


def default_forward(model, batch: Batch) -> torch.Tensor:
    out = model(**batch)
    attr = "logits" if hasattr(out, "logits") else "last_hidden_state"
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, attr):
        return getattr(out, attr)
    return out[0]


@torch.no_grad()
def perplexity(model, batches: Iterable[Batch], forward: Callable = default_forward) -> float:
    """Perplexity over the next-token positions whose target is not padding."""
    nll, n = 0.0, 0
    for b in batches:
        logits = forward(model, b).double()
        ids = b["input_ids"]
        m = b.get("attention_mask", torch.ones_like(ids)).bool()
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        keep = m[:, 1:] & m[:, :-1]
        nll -= float(lp[keep].sum())
        n += int(keep.sum())
    if n == 0:
        raise UserError("held-out text gave no next-token positions; give longer held-out text")
    return math.exp(nll / n)


@torch.no_grad()
def stream_perplexity(model, ids: torch.Tensor, context_len: int, forward: Callable = default_forward,
                      batch_size: int = 4, max_windows: int | None = None) -> dict:
    """Perplexity of one contiguous token stream ``ids`` [n] in non-overlapping windows of ``context_len``
    tokens, the protocol GPTQ and llm-compressor use for WikiText-2: window ``i`` holds tokens
    ``[i·L, (i+1)·L)``, is scored on its own (no carried state, its first token is context only),
    the trailing partial window is dropped, and ``ppl = exp(Σ NLL / Σ predicted tokens)``.
    """
    if context_len < 2:
        raise UserError(f"context length must be >= 2, got {context_len}")
    n_win = len(ids) // context_len
    if max_windows:
        n_win = min(n_win, max_windows)
    if n_win == 0:
        raise UserError(f"the text has {len(ids)} tokens, fewer than one window of {context_len}; give more text or lower --context-len")
    win = ids[:n_win * context_len].reshape(n_win, context_len)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    nll, n = 0.0, 0
    for i in range(0, n_win, batch_size):
        b = win[i:i + batch_size].to(dev)
        logits = forward(model, {"input_ids": b, "attention_mask": torch.ones_like(b)}).double()
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, b[:, 1:, None])[..., 0]
        nll -= float(lp.sum())
        n += lp.numel()
    return {"perplexity": math.exp(nll / n), "nll_mean": nll / n, "tokens_scored": n, "windows": n_win,
            "context_len": context_len, "stream_tokens": int(len(ids))}


def stream_ids(tokenizer, texts: list[str], sep: str = "\n\n") -> torch.Tensor:
    """The documents joined by ``sep`` (as GPTQ joins WikiText-2's lines) and tokenised once, without special tokens."""
    return torch.tensor(tokenizer(sep.join(texts), add_special_tokens=False, verbose=False)["input_ids"], dtype=torch.int64)


@torch.no_grad()
def sentence_embeddings(model, batches: Iterable[Batch], forward: Callable = default_forward) -> torch.Tensor:
    """Mean-pooled (attention-masked) last hidden states, float64 [n_sentences, d]."""
    out = []
    for b in batches:
        h = forward(model, b).double()
        m = b.get("attention_mask")
        if m is None or h.ndim == 2:
            out.append(h if h.ndim == 2 else h.mean(1))
        else:
            m = m.to(h.dtype)[..., None]
            out.append((h * m).sum(1) / m.sum(1).clamp_min(1))
    return torch.cat(out)


def embedding_fidelity(ref: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """Cosine to the reference embeddings and top-1 retrieval agreement (see module docstring)."""
    cos = torch.nn.functional.cosine_similarity(ref, test, dim=-1)
    def top1(e):
        e = torch.nn.functional.normalize(e, dim=-1)
        s = e @ e.T
        s.fill_diagonal_(-float("inf"))
        return s.argmax(1)
    agree = (top1(ref) == top1(test)).double().mean() if len(ref) > 1 else torch.tensor(1.0)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "top1_agreement": float(agree)}


class Evaluator:
    """Evaluate models against the float reference on fixed held-out batches.

    ``kind`` is ``"causal"`` or ``"encoder"``; ``reference`` is the float model (evaluated once).
    """

    def __init__(self, kind: str, batches: list[Batch], reference, forward: Callable = default_forward):
        if kind not in ("causal", "encoder"):
            raise UserError(f"unknown model kind '{kind}'; use 'causal' or 'encoder'")
        self.kind, self.batches, self.forward = kind, batches, forward
        if kind == "causal":
            self.ref_ppl = perplexity(reference, batches, forward)
        else:
            self.ref_emb = sentence_embeddings(reference, batches, forward)

    def __call__(self, model) -> dict[str, float]:
        if self.kind == "causal":
            p = perplexity(model, self.batches, self.forward)
            return {"perplexity": p, "perplexity_float": self.ref_ppl, "ppl_increase": p / self.ref_ppl - 1}
        return embedding_fidelity(self.ref_emb, sentence_embeddings(model, self.batches, self.forward))


_ALIASES = {"cosine": "cosine_mean", "cos": "cosine_mean", "top1": "top1_agreement", "ppl": "ppl_increase",
            "perplexity_increase": "ppl_increase"}
_OPS = {">=": operator.ge, "<=": operator.le}


#: What each metric aggregates over the evaluation text (what a target on it enforces).
AGGREGATE = {
    "perplexity": "exp of the mean token NLL over all next-token positions of the split (one number, token-weighted)",
    "ppl_increase": "perplexity / float perplexity − 1 over all next-token positions of the split (token-weighted mean NLL)",
    "cosine_mean": "mean over the split's sequences of the cosine to the float model's embedding",
    "cosine_min": "minimum over the split's sequences of the cosine to the float model's embedding (worst sequence)",
    "top1_agreement": "fraction of the split's sequences whose nearest neighbour is unchanged",
}


#: The values each metric can take: a target outside them can never be met.
RANGE = {"perplexity": (1.0, math.inf), "ppl_increase": (-1.0, math.inf), "cosine_mean": (-1.0, 1.0),
         "cosine_min": (-1.0, 1.0), "top1_agreement": (0.0, 1.0)}


def describe_target(target: tuple[str, str, float]) -> str:
    """One line: the metric, its aggregate and the bound, e.g. for `tune`'s output."""
    name, op, v = target
    return f"{name} {op} {v:g}: {AGGREGATE.get(name, 'as measured')}"


def parse_target(text: str) -> tuple[str, str, float]:
    """``"cosine>=0.99"`` -> ``("cosine_mean", ">=", 0.99)``; ``"ppl<=5%"`` -> ``("ppl_increase", "<=", 0.05)``."""
    m = re.fullmatch(r"\s*([a-z_0-9]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*(%?)\s*", text or "")
    if not m:
        raise UserError(f"target '{text}' is not 'metric>=value' or 'metric<=value'; e.g. cosine>=0.99 or ppl<=5%")
    name = _ALIASES.get(m.group(1), m.group(1))
    try:
        v = float(m.group(3)) / (100 if m.group(4) else 1)
    except ValueError:
        raise UserError(f"target '{text}': '{m.group(3)}' is not a number") from None
    if name not in RANGE:
        raise UserError(f"target '{text}': unknown metric '{m.group(1)}'; use one of {', '.join(sorted(RANGE))} "
                        f"(or {', '.join(sorted(_ALIASES))})")
    lo, hi = RANGE[name]
    if (m.group(2) == ">=" and v > hi) or (m.group(2) == "<=" and v < lo):
        raise UserError(f"target '{text}' can never be met: {name} lies in [{lo:g}, {hi:g}]")
    return name, m.group(2), v


def meets(metrics: dict[str, float], target: tuple[str, str, float]) -> bool:
    """Whether ``metrics`` satisfies ``target`` (UserError if the metric is not measured)."""
    name, op, v = target
    if name not in metrics:
        raise UserError(f"target metric '{name}' is not measured for this model; use one of {sorted(metrics)}")
    return bool(_OPS[op](metrics[name], v))
