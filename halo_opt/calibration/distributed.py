"""Calibration on several processes / GPUs of one host (``halo-opt calibrate --world N``, torchrun).

Split (docs/contracts.md §3, "Distributed calibration"):

* **Hessians: by layer.** The planned layers, in execution order, are cut into ``world``
  contiguous runs of about equal Hessian bytes (``K²`` each); rank ``r`` runs the forward over
  *all* calibration batches and accumulates only its run (in groups of ``max_hessian_bytes``,
  stopping each forward after its group's last layer, as one process does). Every layer's
  ``H`` therefore comes from the same float64 operations on the same inputs as in one process:
  the files are **bitwise identical** (tested, gloo), the float64 work and the Hessian memory are
  divided by ``world``, and no ``K×K`` tensor crosses processes. The alternative, sharding the
  sequences and all-reducing partial sums, would also divide the forward passes, but it changes
  the float64 summation order (results equal only to rounding), needs every rank to hold every
  layer's ``K×K`` sum, moves them over the interconnect, and the activation-histogram scale
  (taken from the first batch) would have to be broadcast first. On the target (70B on H200s)
  the float64 accumulation, not the bf16 forward, dominates (fp64 ≈ 1/15 of bf16 throughput),
  so the layer split divides the dominant cost.
* **Fisher: by batch.** ``F_r`` needs a forward and a backward through the whole model, so the
  batches are dealt round-robin; each round the ranks all-gather their per-batch sums (one
  float64 vector of Σ out_features) and add them in batch order: bitwise the single-process sum.
* Only rank 0 writes ``run.json``, ``fisher.safetensors`` and the index (``layers.json``,
  ``meta.json``); each rank writes its own layers' files through :func:`.hessian.save_hessian`
  and checkpoints to ``partial.rank<r>.safetensors``. A crashed run resumes with any ``world``
  (the layer files do not depend on it; checkpoints of another split are ignored).
"""

from __future__ import annotations

from pathlib import Path

from ..procgroup import Shard, env_shard, run_world
from ..errors import UserError
from .models import ModelAdapter


def layer_runs(sizes: list[int], world: int) -> list[list[int]]:
    """Cut items of the given costs (in order) into ``world`` contiguous runs of about equal cost:
    item ``i`` goes to the run whose share ``[r/world, (r+1)/world)`` of the total holds the
    midpoint of its cumulative cost. Deterministic; some runs are empty when items < world."""
    total = float(sum(sizes)) or 1.0
    runs: list[list[int]] = [[] for _ in range(world)]
    acc = 0.0
    for i, s in enumerate(sizes):
        mid = (acc + s / 2) / total
        runs[min(world - 1, int(mid * world))].append(i)
        acc += s
    return runs


def rank_groups(adapter: ModelAdapter, order: list[str], max_bytes: int, shard: Shard) -> list[list[str]]:
    """This rank's layer groups: its contiguous run of ``order`` (balanced by Hessian bytes), grouped by ``max_bytes``."""
    from .hessian import _groups

    runs = layer_runs([adapter.layer(n).in_features ** 2 for n in order], shard.world)
    mine = [order[i] for i in runs[shard.rank]]
    return _groups(adapter, mine, max_bytes) if mine else []


def _same_inputs(adapter: ModelAdapter, tokens, shard: Shard) -> None:
    """Every rank must calibrate the same model on the same tokens (hashes all-gathered)."""
    if shard.world <= 1:
        return
    import torch
    import torch.distributed as dist

    h = bytes.fromhex(adapter.sha256()) + bytes.fromhex(tokens.sha256())
    mine = torch.tensor(list(h), dtype=torch.uint8 if shard.backend != "nccl" else torch.int32, device=shard.device)
    got = [torch.empty_like(mine) for _ in range(shard.world)]
    dist.all_gather(got, mine)
    if any(not torch.equal(g, mine) for g in got):
        raise UserError("the ranks see different models or calibration tokens; give every rank the same inputs")


def calibrate_shard(adapter: ModelAdapter, tokens, out: str | Path, shard: Shard, **kw) -> Path:
    """:func:`.hessian.calibrate` as one rank of a group (every rank calls it with the same inputs)."""
    from .hessian import calibrate

    _same_inputs(adapter, tokens, shard)
    extra = dict(kw.pop("extra_meta", None) or {})
    if shard.world > 1:
        extra["distributed"] = shard.describe() | {"hessians": "layers split, contiguous by bytes", "fisher": "batches round-robin"}
    return calibrate(adapter, tokens, out, device=shard.device, dist=shard if shard.world > 1 else None,
                     extra_meta=extra, **kw)


# -- CLI / API: inputs rebuilt in every process from plain values --------------------------

def cli_inputs(shard: Shard, a: dict):
    """The CLI's adapter and calibration tokens from its options (a worker rebuilds them itself)."""
    from .models import DEFAULT_INCLUDE, load_model
    from .text import calibration_batch

    adapter = load_model(a["model"], a.get("include") or DEFAULT_INCLUDE, a.get("exclude"), a.get("layers"))
    tokens = calibration_batch(adapter.tokenizer, a.get("text"), a["sequences"], a["seq_len"], a["seed"],
                               a.get("split_seed", 0), a.get("heldout_frac", 0.2), max_length=adapter.max_length)
    return adapter, tokens


def _prepare(shard: Shard, a: dict):
    adapter, tokens = _resolve(a["inputs"])(shard, a["inputs_args"])
    return adapter, tokens, a


def _run(shard: Shard, state) -> tuple[str, int, str, int]:
    adapter, tokens, a = state
    kw = dict(a["calibrate"])
    if not shard.main:
        kw["progress"] = False
    out = calibrate_shard(adapter, tokens, a["out"], shard, **kw)
    return str(out), len(adapter.linears), adapter.name, tokens.n_tokens


def _resolve(ref: str):
    from ..procgroup import _resolve as r

    return r(ref)


def calibrate_world(inputs, inputs_args: dict, out: str | Path, world: int = 1, device: str = "cpu",
                    threads: int | None = None, **calibrate_kw) -> tuple[str, int, str, int] | None:
    """Calibrate on ``world`` processes of this host: ``inputs(shard, inputs_args) -> (adapter, tokens)``
    is a top-level function every process calls to build its own model and tokens
    (:func:`cli_inputs` for the CLI's options); ``calibrate_kw`` as :func:`.hessian.calibrate`
    (JSON-able values). Under torchrun (``WORLD_SIZE`` set) the group comes from the environment.
    Returns ``(out, n_layers, model name, n_tokens)`` (None on torchrun's other ranks)."""
    from ..procgroup import _ref

    a = {"inputs": _ref(inputs), "inputs_args": inputs_args, "out": str(out), "calibrate": calibrate_kw}
    shard = env_shard(device)
    if shard is not None:
        if world not in (1, shard.world):
            raise UserError(f"--world {world} differs from torchrun's {shard.world} processes; leave --world out under torchrun")
        from ..procgroup import _close

        try:
            res = _run(shard, _prepare(shard, a))
            return res if shard.main else None
        finally:
            _close()
    return run_world(world, device, _prepare, _run, a, threads)
