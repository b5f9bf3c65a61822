"""Calibration text and token batches.

Default text is English prose every Python install carries: the docstrings of the standard
library (module, class and function docstrings read with ``ast`` from the stdlib ``.py``
files, test suites excluded), one *document* per module, in sorted module order. Modules are
split by a seeded permutation (``split_seed``) into a calibration part (``1 − heldout_frac``)
and a held-out part (``heldout_frac``); the held-out part is split again, by the same
permutation, into a *tuning* half (what the closed loop tunes the budget on) and a *test* half
(what it reports; never seen by calibration or tuning). The parts are disjoint sets of modules,
so no text is shared among calibration, tuning and test (asserted in the tests).

:func:`token_batch` turns documents into ``n_sequences × seq_len`` token ids: documents are
visited in a seeded order, each is tokenised and cut into consecutive chunks of
``seq_len − (#special tokens)`` tokens (at most ``max_chunks_per_doc`` per document, for
variety; 2 for the stdlib docstrings, unlimited for user files), each chunk is wrapped with the tokenizer's special
tokens (e.g. ``[CLS] … [SEP]`` or ``<s> …``) and right-padded to ``seq_len`` (padding has
``attention_mask = 0`` and is excluded from the statistics); chunks shorter than
``min_tokens`` are dropped.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..artifacts import sha256_bytes, sha256_json, write_json
from ..errors import UserError
from ..paths import cache_dir

#: Parts of the default corpus: calibration | heldout (= tuning ∪ test) | tuning | test | all.
PARTS = ("calibration", "heldout", "tuning", "test", "all")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Document:
    name: str
    text: str


@lru_cache(maxsize=1)
def _stdlib_files() -> tuple[tuple[str, Path], ...]:
    """(module, path) of the standard library's modules, sorted by path (listed once per process;
    the skipped folders are not entered: 10 ms instead of the 0.5-1.5 s of a full ``rglob``)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        paths += [Path(folder) / f for f in files if f.endswith(".py") and not f.startswith("test_")]
    return tuple((".".join(p.relative_to(root).with_suffix("").parts), p) for p in sorted(paths))


def _docstrings(path: Path) -> str:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    docs = [ast.get_docstring(n) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return "\n\n".join(d.strip() for d in docs if d and d.strip())


def stdlib_documents(part: str = "calibration", split_seed: int = 0, heldout_frac: float = 0.2) -> list[Document]:
    """Standard-library docstrings, one document per module, for ``part`` in :data:`PARTS`.

    Parsed once per Python version and cached (``cache_dir()/text/``).
    """
    if part not in PARTS:
        raise UserError(f"unknown text part {part!r}; use one of {', '.join(PARTS)}")
    if not 0 <= heldout_frac < 1:
        raise UserError(f"held-out fraction must be in [0, 1), got {heldout_frac}")
    files = _stdlib_files()
    key = sha256_json([sys.version, [n for n, _ in files]])[:16]
    cache = cache_dir() / "text" / f"stdlib-docstrings-{key}.json"
    try:
        docs = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        docs = [[n, t] for n, p in files if (t := _docstrings(p))]
        write_json(cache, docs)
    if not docs:
        raise UserError("no standard-library docstrings found (stripped install?); pass calibration text files with --text")
    perm = np.random.default_rng(split_seed).permutation(len(docs))
    n_held = int(round(heldout_frac * len(docs)))
    held = set(perm[:n_held].tolist())
    tuning = set(perm[:n_held // 2].tolist())
    pick = {"all": lambda i: True, "heldout": lambda i: i in held, "calibration": lambda i: i not in held,
            "tuning": lambda i: i in tuning, "test": lambda i: i in held and i not in tuning}[part]
    return [Document(n, t) for i, (n, t) in enumerate(docs) if pick(i)]


def read_documents(paths: Sequence[str | Path]) -> list[Document]:
    """One document per UTF-8 text file (a folder contributes its ``*.txt`` files, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.txt"))
            if not found:
                raise UserError(f"calibration folder {p} holds no .txt files; add text files or pass files directly")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"calibration text {p} not found; check the path")
    docs = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"calibration text {f} is not UTF-8 text; convert it or drop it") from None
        if not text.strip():
            raise UserError(f"calibration text {f} is empty; give a file with prose in it")
        docs.append(Document(str(f), text))
    return docs


def split_documents(docs: Sequence[Document], part: str, split_seed: int = 0) -> list[Document]:
    """The ``tuning`` or ``test`` half of the user's documents (a seeded permutation of whole
    documents, so the halves share no file); needs at least two documents."""
    if len(docs) < 2:
        raise UserError("disjoint tuning and test text needs at least two held-out text files (one per split); give more --text files")
    perm = np.random.default_rng(split_seed).permutation(len(docs))
    half = set(perm[:len(docs) // 2].tolist())
    return [d for i, d in enumerate(docs) if (i in half) == (part == "tuning")]


@dataclass
class TokenBatch:
    """``input_ids``/``attention_mask`` [S, L] (int64) plus the spec that produced them."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    spec: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def sha256(self) -> str:
        return sha256_bytes(self.input_ids.numpy().tobytes() + self.attention_mask.numpy().tobytes())

    def batches(self, batch_size: int, device: str | torch.device = "cpu") -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(self.input_ids), batch_size):
            yield {"input_ids": self.input_ids[i:i + batch_size].to(device),
                   "attention_mask": self.attention_mask[i:i + batch_size].to(device)}

    def __len__(self) -> int:
        return len(self.input_ids)


def _special_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """Special-token ids the tokenizer puts before and after a text (found by tokenising 'a')."""
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    core = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(full) - len(core) + 1):
        if full[i:i + len(core)] == core:
            return list(full[:i]), list(full[i + len(core):])
    return [], []


def token_batch(tokenizer, docs: Sequence[Document], n_sequences: int, seq_len: int, seed: int,
                min_tokens: int = 16, max_length: int | None = None, max_chunks_per_doc: int | None = None) -> TokenBatch:
    """``n_sequences × seq_len`` token ids from ``docs`` (see module docstring); seeded document order."""
    if tokenizer is None:
        raise UserError("the model has no tokenizer; add tokenizer files to its folder or pass token batches directly")
    if n_sequences < 1 or seq_len < 2:
        raise UserError(f"need --sequences >= 1 and --seq-len >= 2, got {n_sequences} and {seq_len}")
    if max_length and seq_len > max_length:
        raise UserError(f"--seq-len {seq_len} exceeds the model's maximum {max_length} positions; lower it")
    if not docs:
        raise UserError("no calibration documents; pass text files or use the default stdlib docstrings")
    pre, post = _special_wrap(tokenizer)
    body = seq_len - len(pre) - len(post)
    if body < 1:
        raise UserError(f"--seq-len {seq_len} leaves no room beside {len(pre) + len(post)} special tokens; raise it")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    min_tokens = min(min_tokens, body)
    order = np.random.default_rng(seed).permutation(len(docs))
    ids = torch.full((n_sequences, seq_len), pad, dtype=torch.int64)
    mask = torch.zeros((n_sequences, seq_len), dtype=torch.int64)
    s, used = 0, []
    for d in order:
        toks = tokenizer(docs[d].text, add_special_tokens=False, verbose=False)["input_ids"]
        used.append(docs[d].name)
        for i in range(0, min(len(toks), body * (max_chunks_per_doc or len(toks))), body):
            chunk = toks[i:i + body]
            if len(chunk) < min_tokens:
                continue
            row = pre + chunk + post
            ids[s, :len(row)] = torch.tensor(row)
            mask[s, :len(row)] = 1
            s += 1
            if s == n_sequences:
                break
        if s == n_sequences:
            break
    if s < n_sequences:
        raise UserError(f"calibration text yields only {s} sequences of up to {seq_len} tokens; add text or lower --sequences")
    spec = {"sequences": n_sequences, "seq_len": seq_len, "seed": seed, "min_tokens": min_tokens,
            "max_chunks_per_doc": max_chunks_per_doc,
            "documents_used": len(used), "documents_sha256": sha256_json(used)}
    tb = TokenBatch(ids, mask, spec)
    tb.spec["tokens_sha256"] = tb.sha256()
    tb.spec["n_tokens"] = tb.n_tokens
    return tb


def calibration_batch(tokenizer, text: Sequence[str | Path] | None, n_sequences: int, seq_len: int, seed: int,
                      split_seed: int = 0, heldout_frac: float = 0.2, part: str = "calibration",
                      max_length: int | None = None) -> TokenBatch:
    """Token batch from the user's text files, or from the stdlib docstrings' ``part`` split."""
    if text:
        docs, source = read_documents(text), {"source": "files", "files": [str(p) for p in text]}
        if part in ("tuning", "test"):
            docs = split_documents(docs, part, split_seed)
            source |= {"part": part, "split_seed": split_seed}
    else:
        docs = stdlib_documents(part, split_seed, heldout_frac)
        source = {"source": "python-stdlib-docstrings", "python": sys.version.split()[0], "part": part,
                  "split_seed": split_seed, "heldout_frac": heldout_frac}
    tb = token_batch(tokenizer, docs, n_sequences, seq_len, seed, max_length=max_length,
                     max_chunks_per_doc=None if text else 2)
    tb.spec = source | tb.spec
    return tb
