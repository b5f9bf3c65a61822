"""Loss sensitivity of every planned layer's output channels (diagonal Fisher), from backward passes.

For a planned linear ``y = x Wᵀ`` and a per-sequence loss ``L_s`` (below), backward passes give
``g_{t,r} = ∂L_s/∂y_{t,r}`` at every non-padding token ``t`` and output channel ``r``; this
module accumulates, in float64 and without keeping activations,

    F_r = Σ_t g_{t,r}²           (over all calibration tokens)       and  ``n_units``

so that the loss-aware error model (:mod:`halo_opt.costs`, ``error_model="fisher"``) predicts the
end-to-end degradation ``D`` of a weight change ``ΔW`` as

    D ≈ Σ_r w_r · Δw_r H Δw_rᵀ,     w_r = F_r / (4 · n_units)

(derivation, assumptions and units in formulations/formulation.md, "Loss-aware error model").

Losses (``LOSSES``), both with a non-zero gradient at the float model:

* ``nll`` (causal LMs): ``L_s = Σ_t −log p(x_{t+1} | x_≤t)`` over the next-token positions whose
  token and target are not padding; ``n_units`` = number of such positions. ``D`` is then the
  increase of the mean token NLL (nats/token), i.e. ``log(ppl_q / ppl_float)``.
* ``embedding`` (sentence encoders whose forward returns embeddings ``e`` [B, d]):
  ``L_s = z_sᵀ e_s`` with ``z_s = (I − ê_s ê_sᵀ) ξ_s / ‖e_s‖``, ``ξ_s ~ N(0, I_d)`` seeded,
  ``z_s`` held constant. ``E[g gᵀ] = Jᵀ P J`` with ``P = (I − ê êᵀ)/‖e‖²``, the Hessian of
  ``1 − cos(e + δ, e) ≈ ½ δᵀ P δ`` (a Gauss-Newton/Fisher of the cosine loss, whose own gradient
  at the float model is zero); ``n_units`` = number of sequences. ``D`` is ``1 − mean cosine``.

Output in the calibration folder: ``fisher.safetensors`` (one float64 [out_features] tensor per
layer, named by the layer; metadata: loss, n_units, seed, tokens/model hashes), written atomically
when complete. Resuming: the running sums are checkpointed to ``fisher.partial.safetensors``
every ``checkpoint_s`` seconds with the batch count; a rerun with the same inputs continues from
there (the projections ``ξ`` are seeded per batch, so results are bit-identical).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..errors import UserError
from .models import SUPPORTED, ModelAdapter
from .text import TokenBatch

LOSSES = ("nll", "embedding")
FISHER_FILE = "fisher.safetensors"


def default_loss(adapter: ModelAdapter) -> str | None:
    """``nll`` for causal LMs, ``embedding`` for encoders, None for custom adapters (no known loss)."""
    return {"causal": "nll", "encoder": "embedding"}.get(SUPPORTED.get(adapter.kind, ""))


def sequence_loss(loss: str, out: torch.Tensor, batch: dict, seed: int) -> tuple[torch.Tensor, int]:
    """``(Σ_s L_s, n_units)`` of one batch for ``loss`` (see module docstring); ``out`` is the forward's output."""
    mask = batch["attention_mask"].bool()
    if loss == "nll":
        if out.ndim != 3:
            raise UserError(f"loss 'nll' needs logits [B, T, V] from the forward, got shape {tuple(out.shape)}; use loss 'embedding'")
        ids = batch["input_ids"]
        keep = mask[:, 1:] & mask[:, :-1]
        lp = torch.log_softmax(out[:, :-1].to(torch.promote_types(out.dtype, torch.float32)), -1).gather(-1, ids[:, 1:, None])[..., 0]
        return -(lp * keep).sum(), int(keep.sum())
    if loss == "embedding":
        e = out if out.ndim == 2 else None
        if e is None:
            raise UserError(f"loss 'embedding' needs sentence embeddings [B, d] from the forward, got shape {tuple(out.shape)}")
        g = torch.Generator().manual_seed(seed)
        xi = torch.randn(e.shape, generator=g, dtype=torch.float64).to(e.device)
        with torch.no_grad():
            ed = e.detach().double()
            norm = ed.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            u = ed / norm
            z = (xi - (xi * u).sum(-1, keepdim=True) * u) / norm
        return (z.to(e.dtype) * e).sum(), e.shape[0]
    raise UserError(f"unknown Fisher loss {loss!r}; use one of {', '.join(LOSSES)}")


def collect_fisher(adapter: ModelAdapter, tokens: TokenBatch, out: str | Path, loss: str | None = None,
                   device: str = "cpu", batch_size: int = 8, seed: int = 0, checkpoint_s: float = 60.0,
                   checkpoint_every: int | None = None, on_batch=None, dist=None) -> Path:
    """Accumulate ``F_r`` of every planned layer over ``tokens`` into ``out/fisher.safetensors``.

    One forward + backward pass per batch; a finished file with the same inputs is kept as is.
    ``on_batch(batch_index)`` is called after each batch (tests interrupt runs with it).
    ``dist`` (a :class:`halo_opt.procgroup.Shard`, every rank calling with the same inputs):
    the batches are dealt round-robin to the ranks; after each round every rank gathers the
    round's per-batch sums and adds them in batch order, so ``F`` is bitwise the single-process
    sum; rank 0 writes the checkpoints and the file.
    """
    from .hessian import _save_st

    loss = loss or default_loss(adapter)
    if loss not in LOSSES:
        raise UserError(f"no Fisher loss for model kind {adapter.kind!r}; pass loss='nll' (logits) or 'embedding' (sentence embeddings)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = {"loss": loss, "seed": seed, "batch_size": batch_size, "model_sha256": adapter.sha256(),
            "tokens_sha256": tokens.sha256(), "layers": [l.name for l in adapter.linears]}
    final, partial = out / FISHER_FILE, out / "fisher.partial.safetensors"
    if final.is_file() and _meta(final).get("spec") == spec:
        return final
    world, rank = (dist.world, dist.rank) if dist is not None else (1, 0)
    adapter.to(device)
    names = [l.name for l in adapter.linears]
    sizes = [l.out_features for l in adapter.linears]
    flat = torch.zeros(sum(sizes), dtype=torch.float64, device=device)
    F = dict(zip(names, flat.split(sizes)))  # views into ``flat``
    n_units, start = 0, 0
    if partial.is_file():
        md = _meta(partial)
        if md.get("spec") == spec:
            st = load_file(str(partial), device=str(device))
            for k in F:
                F[k].copy_(st[k])
            n_units, start = int(md["n_units"]), int(md["batches_done"])
    if dist is not None:
        dist.barrier()  # every rank has read the checkpoint before rank 0 may replace it
    batches = list(tokens.batches(batch_size, device)) if world > 1 else None
    n_batches = -(-len(tokens) // batch_size)
    t_ckpt = time.perf_counter()
    stream = tokens.batches(batch_size, device) if world == 1 else range(start, n_batches, world)
    for bi, batch in enumerate(stream):
        if world == 1:
            if bi < start:
                continue
            terms, n = _batch_terms(adapter, batch, loss, seed * 1_000_003 + bi, names, sizes)
            flat += terms
            n_units += n
            done = bi + 1
            if on_batch:
                on_batch(bi)
        else:
            b0 = batch  # first batch of this round
            mine = b0 + rank
            buf = torch.zeros(sum(sizes) + 1, dtype=torch.float64, device=device)
            if mine < n_batches:
                terms, n = _batch_terms(adapter, batches[mine], loss, seed * 1_000_003 + mine, names, sizes)
                buf[:-1], buf[-1] = terms, float(n)
            got = [torch.empty_like(buf) for _ in range(world)]
            import torch.distributed as tdist

            tdist.all_gather(got, buf)
            for j in range(min(world, n_batches - b0)):  # batch order, as the single process adds them
                flat += got[j][:-1]
                n_units += int(got[j][-1])
            done = min(b0 + world, n_batches)
        due = (checkpoint_every and done % checkpoint_every == 0) or time.perf_counter() - t_ckpt >= checkpoint_s
        if due and done * batch_size < len(tokens) and rank == 0:
            t_ckpt = time.perf_counter()
            _save_st(partial, F, {"spec": json.dumps(spec), "n_units": str(n_units), "batches_done": str(done)})
    if n_units == 0:
        raise UserError("calibration tokens gave no loss terms (all padding?); give longer calibration text")
    if rank == 0:
        _save_st(final, F, {"spec": json.dumps(spec), "n_units": str(n_units), "loss": loss})
        partial.unlink(missing_ok=True)
    if dist is not None:
        dist.barrier()
    return final


def _batch_terms(adapter: ModelAdapter, batch: dict, loss: str, seed: int, names: list[str], sizes: list[int]) -> tuple[torch.Tensor, int]:
    """One batch's ``Σ_t g_{t,r}²`` of every layer, concatenated in ``names`` order (float64), and its ``n_units``.

    A layer called several times per forward gets the sum of its calls, added in call order."""
    outs: dict[str, list[torch.Tensor]] = {}
    hooks = [l.module.register_forward_hook(lambda m, i, o, n=l.name: outs.setdefault(n, []).append(o)) for l in adapter.linears]
    params = list(adapter.model.parameters())
    req = [p.requires_grad for p in params]
    for p in params:  # a graph from the inputs on; autograd.grad below computes no parameter gradient
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            y = adapter._forward(adapter.model, batch)
            L, n = sequence_loss(loss, y, batch, seed)
            called = [k for k in names if k in outs]
            flat = [t for k in called for t in outs[k]]
            grads = torch.autograd.grad(L, flat, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
        for p, r in zip(params, req):
            p.requires_grad_(r)
    mask = batch["attention_mask"].bool()
    dev = batch["attention_mask"].device
    terms = dict(zip(names, torch.zeros(sum(sizes), dtype=torch.float64, device=dev).split(sizes)))
    i = 0
    for k in called:
        for _ in outs[k]:
            gk = grads[i]
            i += 1
            if gk is None:
                continue
            gk = gk.detach().to(torch.float64)
            if gk.shape[:-1] == mask.shape:
                gk = gk[mask]
            terms[k] += (gk.reshape(-1, gk.shape[-1]) ** 2).sum(0)
    return torch.cat([terms[k] for k in names]), n


def _meta(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        md = dict(f.metadata() or {})
    if "spec" in md:
        md["spec"] = json.loads(md["spec"])
    return md


def load_fisher(calib_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(meta, {layer: F [out_features] float64})`` of a calibration folder; UserError if absent."""
    p = Path(calib_dir) / FISHER_FILE
    if not p.is_file():
        raise UserError(f"calibration {calib_dir} has no Fisher statistics ({FISHER_FILE}); recalibrate with "
                        "`halo-opt calibrate` (Fisher on, the default) or use --error-model local")
    md = _meta(p)
    md["n_units"] = int(md["n_units"])
    return md, {k: v.double() for k, v in load_file(str(p)).items()}


def row_weights(calib_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(meta, {layer: w_r = F_r / (4 n_units)})``: the loss-aware weight of each output channel."""
    md, F = load_fisher(calib_dir)
    return md, {k: v / (4.0 * md["n_units"]) for k, v in F.items()}
