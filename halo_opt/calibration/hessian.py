"""Layer-input Hessians and activation histograms from calibration tokens (streaming).

For every planned linear ``y = x Wᵀ`` forward hooks accumulate, in float64 and without keeping
activations,

    H = (2/n) Σ_t x_t x_tᵀ        (K×K, n = number of non-padding tokens that reached the layer)

so that ``Δw H Δwᵀ = (2/n) Σ_t (Δw·x_t)²`` is the per-token output error of a weight change.
Padding tokens (``attention_mask = 0``) are excluded.

Activation histogram (input of the energy model): each layer's inputs are mapped to the MAC's
activation code grid (``abits`` bits, signed ``[-2^(b-1), 2^(b-1)-1]`` or unsigned
``[0, 2^b-1]``) with a **per-layer symmetric scale** ``s_a = max|x| / qmax`` taken over the
layer's first calibration batch (as a static per-tensor activation quantizer calibrated on one
batch would), ``code = clip(round(x/s_a))``; later values beyond the grid are clipped to its
ends and counted in ``act_clipped``. Counts are float64, index ``code − act_code_min``.

Output folder (docs/contracts.md §3): ``hessians/<layer>.safetensors`` (``H``, ``damp`` = 0,
``n_tokens``, ``act_hist``, ``act_scale``, ``act_code_min``, ``act_clipped``), ``layers.json``
(execution order), ``meta.json`` (written last: its presence means the run is complete).

Resuming: layers are processed in groups that fit ``max_hessian_bytes`` (one pass over the
data per group, stopping each forward after the group's last layer). A layer's file is written
atomically once complete; the running sums of the current group are checkpointed atomically to
``partial.safetensors`` every minute (or ``checkpoint_every`` batches) with the batch count, so a
rerun with the same inputs (``run.json``) skips finished layers and continues the group from
its last checkpointed batch, giving bit-identical results.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..artifacts import atomic_path, provenance, read_json, write_json
from ..errors import UserError
from .models import ModelAdapter
from .text import TokenBatch

if TYPE_CHECKING:
    from ..procgroup import Shard

ACT_SCALE_RULE = "per-layer symmetric: s_a = max|x| over the layer's first calibration batch / qmax; codes clipped to the grid"


class DampingWarning(UserWarning):
    """Damping had to be raised above the requested relative value to make H positive definite."""


@dataclass(frozen=True)
class Damped:
    H: torch.Tensor
    damp: float       # absolute λ added to diag H
    rel: float        # λ / mean(diag H) actually used (requested rel unless raised)
    raised: bool


def damped(H: torch.Tensor, rel: float = 0.01, name: str = "H", max_tries: int = 12) -> Damped:
    """``H + λI`` with ``λ = rel · mean(diag H)``; if Cholesky fails, λ grows ×10 until it succeeds.

    Raising is never silent: it emits a :class:`DampingWarning` naming the layer and sets
    ``raised``. An all-zero H (dead inputs) is damped with ``λ = rel`` (absolute). ``rel = 0``
    returns H unchanged without the check (exact, possibly singular).
    """
    d = damped_blocks(H[None], torch.diagonal(H), rel, name, max_tries)   # the whole H as one block
    return Damped(d.H[0], d.damp, d.rel, d.raised)


def damped_blocks(blocks: torch.Tensor, diag: torch.Tensor, rel: float = 0.01, name: str = "H",
                  max_tries: int = 12) -> Damped:
    """:func:`damped` on the diagonal blocks ``[nb, w, w]`` of H (``diag`` = diag H, [K]): the same
    ``λ = rel · mean(diag H)``, added to the K real diagonal entries (not the zero padding),
    raised ×10 (with a :class:`DampingWarning`) until every block is positive definite.
    ``Damped.H`` holds the damped blocks."""
    if rel < 0:
        raise UserError(f"damping must be >= 0, got {rel}")
    if rel == 0:
        return Damped(blocks, 0.0, 0.0, False)
    nb, w, _ = blocks.shape
    K = diag.shape[0]
    mean_diag = float(diag.mean())
    base = mean_diag if mean_diag > 0 else 1.0
    lam = rel * base
    real = (torch.arange(nb * w, device=blocks.device) < K).to(blocks.dtype).reshape(nb, w)
    pad = torch.diag_embed(1.0 - real)  # identity on the padding: the check sees only the real part
    for attempt in range(max_tries):
        Hd = blocks + torch.diag_embed(lam * real)
        if int(torch.linalg.cholesky_ex(Hd + pad).info.abs().sum()) == 0:
            raised = attempt > 0 or mean_diag <= 0
            if raised:
                warnings.warn(DampingWarning(f"{name}: H is singular/indefinite; damping raised from {rel:g} to "
                                             f"{lam / base:g} x mean(diag H) (lambda = {lam:.3e})"), stacklevel=3)
            return Damped(Hd, lam, lam / base, raised)
        lam *= 10
    raise UserError(f"{name}: H stays indefinite even with damping {lam:.3e}; its calibration data is corrupt, recalibrate")


class _Stop(Exception):
    """Raised by the last hook of a group to skip the rest of the forward."""


class _Acc:
    """Running float64 sums of one layer: Σ x xᵀ, token count, activation histogram."""

    def __init__(self, name: str, K: int, abits: int, signed: bool, device):
        self.name, self.K = name, K
        self.qmin, self.qmax = (-(1 << (abits - 1)), (1 << (abits - 1)) - 1) if signed else (0, (1 << abits) - 1)
        self.S = torch.zeros(K, K, dtype=torch.float64, device=device)
        self.hist = torch.zeros(self.qmax - self.qmin + 1, dtype=torch.float64, device=device)
        self.n, self.clipped, self.scale = 0, 0, 0.0  # scale 0 = not set yet

    def add(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        if x.shape[-1] != self.K:
            raise UserError(f"layer {self.name}: input has {x.shape[-1]} features, expected {self.K}")
        if mask is not None and x.shape[:-1] != mask.shape:
            if x.shape[:-1].numel() != mask.numel():
                raise UserError(f"layer {self.name}: input shape {tuple(x.shape)} does not match the attention mask "
                                f"{tuple(mask.shape)}; give a forward whose linears see one row per token")
        X = x.reshape(-1, self.K)
        if mask is not None:
            X = X[mask.reshape(-1)]
        X = X.to(torch.float64)
        if not bool(torch.isfinite(X).all()):
            raise UserError(f"layer {self.name}: NaN or Inf in its input activations; check the model weights and inputs")
        self.S.addmm_(X.T, X)
        self.n += X.shape[0]
        if X.numel() == 0:
            return
        if self.scale == 0.0:
            self.scale = float(X.abs().max() if self.qmin < 0 else X.max().clamp_min(0)) / self.qmax
        q = torch.round(X / self.scale) if self.scale > 0 else torch.zeros_like(X)
        out = (q < self.qmin) | (q > self.qmax)
        self.clipped += int(out.sum())
        idx = (q.clamp(self.qmin, self.qmax) - self.qmin).to(torch.int64).reshape(-1)
        self.hist += torch.bincount(idx, minlength=len(self.hist)).to(torch.float64)

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{self.name}/S": self.S, f"{self.name}/hist": self.hist,
                f"{self.name}/meta": torch.tensor([self.n, self.clipped, self.scale], dtype=torch.float64)}

    def load(self, st: dict[str, torch.Tensor]) -> None:
        self.S.copy_(st[f"{self.name}/S"])
        self.hist.copy_(st[f"{self.name}/hist"])
        n, c, s = st[f"{self.name}/meta"].tolist()
        self.n, self.clipped, self.scale = int(n), int(c), float(s)

    def result(self) -> dict[str, torch.Tensor]:
        if self.n == 0:
            raise UserError(f"layer {self.name} saw no tokens: the forward never calls it; exclude it from the plan")
        cpu = lambda t: t.detach().cpu().contiguous()  # noqa: E731
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        i64 = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
        return {"H": cpu(self.S * (2.0 / self.n)), "damp": f64(0.0), "n_tokens": i64(self.n), "act_hist": cpu(self.hist),
                "act_scale": f64(self.scale), "act_code_min": i64(self.qmin), "act_clipped": i64(self.clipped)}


def hessian_path(calib_dir: str | Path, layer: str) -> Path:
    return Path(calib_dir) / "hessians" / f"{layer}.safetensors"


def _save_st(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


#: Hessian layouts of a calibration folder (contract §3): ``full`` keeps H [K, K] float64 (what
#: GPTQ needs); ``blocks`` keeps only what the cost tables need — the diagonal ``block``×``block``
#: blocks of H (``H_blocks`` [nb, block, block], float32 by default, the last block zero-padded),
#: the diagonal ``H_diag`` [K] float64 and the rows' ``WHW_rows`` [N] = (W H Wᵀ)_rr float64 — and
#: GPTQ recomputes a layer's full H at execute time (:func:`recompute_hessians`).
LAYOUTS = ("auto", "full", "blocks")
#: Default block width: the widest column block the fused cost kernel takes; every tile width
#: that divides it (128, 64, 32, ...) reads exact sub-blocks.
BLOCK = 128
#: ``auto`` keeps full Hessians while all of them together fit this many bytes (float64).
AUTO_FULL_BYTES = 4 << 30
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def diag_blocks(H: torch.Tensor, width: int) -> torch.Tensor:
    """The diagonal ``width``×``width`` blocks of ``H`` [K, K] as [nb, width, width] (last zero-padded)."""
    K = H.shape[0]
    nb = -(-K // width)
    out = torch.zeros(nb, width, width, dtype=H.dtype, device=H.device)
    for j in range(nb):
        k = min(width, K - j * width)
        out[j, :k, :k] = H[j * width:j * width + k, j * width:j * width + k]
    return out


def save_hessian(calib_dir: str | Path, layer: str, tensors: dict[str, torch.Tensor], layout: str = "full",
                 block: int = BLOCK, dtype: str = "float32") -> Path:
    """Write one layer's ``hessians/<layer>.safetensors`` (``H`` float64 and ``n_tokens`` at
    least; contract §3), atomically. The one writer of Hessian files. ``layout="blocks"`` stores
    ``H``'s diagonal blocks of width ``block`` in ``dtype`` plus ``H_diag`` (and ``WHW_rows`` if
    given) instead of ``H`` (see :data:`LAYOUTS`); the file's metadata records layout and width."""
    if "H" not in tensors or "n_tokens" not in tensors:
        raise UserError(f"Hessian of layer {layer!r} needs tensors 'H' and 'n_tokens'")
    md = {"layer": layer, "layout": layout}
    if layout == "blocks":
        if block < 1 or dtype not in DTYPES:
            raise UserError(f"Hessian blocks need a width >= 1 and a dtype in {sorted(DTYPES)}, got {block}, {dtype!r}")
        H = tensors["H"]
        tensors = {k: v for k, v in tensors.items() if k != "H"} | {
            "H_blocks": diag_blocks(H, block).to(DTYPES[dtype]), "H_diag": torch.diagonal(H).to(torch.float64).clone()}
        md |= {"block": str(block), "dtype": dtype, "in_features": str(H.shape[0])}
    elif layout != "full":
        raise UserError(f"unknown Hessian layout {layout!r}; use full or blocks")
    path = hessian_path(calib_dir, layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_st(path, tensors, md)
    return path


def save_calibration_index(calib_dir: str | Path, layers: list[dict], meta: dict) -> None:
    """Write ``layers.json`` (``name, in_features, out_features, tokens`` in execution order) and
    ``meta.json`` of a calibration folder (contract §3); :func:`load_calibration` reads them."""
    out = Path(calib_dir)
    write_json(out / "layers.json", layers)
    write_json(out / "meta.json", meta)


def execution_order(adapter: ModelAdapter, batch: dict[str, torch.Tensor]) -> tuple[list[str], dict[str, int]]:
    """Planned layers in the order the forward first calls them, and calls per forward."""
    calls: dict[str, int] = {}
    hooks = [lin.module.register_forward_hook(lambda m, i, o, n=lin.name: calls.__setitem__(n, calls.get(n, 0) + 1))
             for lin in adapter.linears]
    try:
        adapter.forward(batch)
    finally:
        for h in hooks:
            h.remove()
    never = [l.name for l in adapter.linears if l.name not in calls]
    if never:
        raise UserError(f"layer {never[0]} is never called by the model's forward; exclude it from the plan")
    return list(calls), calls


def _groups(adapter: ModelAdapter, order: list[str], max_bytes: int) -> list[list[str]]:
    out: list[list[str]] = [[]]
    used = 0
    for name in order:
        b = 8 * adapter.layer(name).in_features ** 2
        if out[-1] and used + b > max_bytes:
            out.append([])
            used = 0
        out[-1].append(name)
        used += b
    return out


def calibrate(adapter: ModelAdapter, tokens: TokenBatch, out: str | Path, device: str = "cpu", batch_size: int = 8,
              abits: int = 8, asigned: bool = True, max_hessian_bytes: int = 4 << 30, checkpoint_every: int | None = None,
              checkpoint_s: float = 60.0,
              overwrite: bool = False, progress: bool = True, extra_meta: dict | None = None,
              on_batch: Callable[[int, int], None] | None = None, fisher: bool = True, fisher_loss: str | None = None,
              layout: str = "auto", block: int = BLOCK, block_dtype: str = "float32",
              dist: "Shard | None" = None) -> Path:
    """Accumulate ``H`` and activation histograms of every planned layer into the folder ``out``.

    Resumes an interrupted run with the same inputs; ``overwrite`` discards a different one. The
    running sums are checkpointed after every ``checkpoint_every`` batches (if given) and whenever
    ``checkpoint_s`` seconds passed since the last checkpoint.
    ``on_batch(group, batch)`` is called after each finished batch (progress hooks, tests).
    ``fisher``: also collect the output-channel loss sensitivities (:mod:`.fisher`, loss
    ``fisher_loss`` or the model kind's default; skipped for custom adapters without a loss).
    ``layout`` (:data:`LAYOUTS`): ``auto`` keeps full Hessians while they all fit
    :data:`AUTO_FULL_BYTES`, else stores ``block``-wide diagonal blocks in ``block_dtype``.
    Peak memory: the float64 sums of one layer group (``max_hessian_bytes``, at least one layer).
    ``dist``: this process's :class:`halo_opt.procgroup.Shard` when every rank of a group calls
    this with the same inputs (:mod:`.distributed`): each rank accumulates only its share of the
    layers, the Fisher batches are split, rank 0 writes the index files.
    """
    from .fisher import collect_fisher, default_loss

    out = Path(out)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but CUDA is not available; use --device cpu")
    if not 1 <= abits <= 16:
        raise UserError(f"activation bits must be in 1..16, got {abits}")
    t_hash = time.perf_counter()
    if layout not in LAYOUTS:
        raise UserError(f"unknown Hessian layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = "full" if sum(8 * l.in_features ** 2 for l in adapter.linears) <= AUTO_FULL_BYTES else "blocks"
    store = {"layout": layout} | ({"block": int(block), "dtype": block_dtype} if layout == "blocks" else {})
    spec = {"model": adapter.name, "model_sha256": adapter.sha256(), "tokens_sha256": tokens.sha256(),
            "abits": abits, "asigned": asigned, "batch_size": batch_size, "layers": [l.name for l in adapter.linears]}
    if layout != "full":
        spec["hessian"] = store
    floss = (fisher_loss or default_loss(adapter)) if fisher else None
    if floss:
        spec["fisher_loss"] = floss
    run_file = out / "run.json"
    sync = dist.barrier if dist is not None else (lambda: None)
    main = dist is None or dist.main
    sync()  # every rank reads the folder's state before rank 0 changes it
    reset = False
    if run_file.is_file():
        old = read_json(run_file, "calibration run record")
        if old.get("spec") != spec:
            if not overwrite:
                raise UserError(f"{out} holds a calibration of other inputs (model, tokens or settings differ); use a new --out or --overwrite")
            reset = True
        elif (out / "meta.json").is_file() and not overwrite:
            sync()
            return out
    sync()
    t0 = time.perf_counter()
    if main:
        if reset:
            import shutil

            shutil.rmtree(out)
        write_json(run_file, {"spec": spec})
    sync()
    timing = {"hash_s": t0 - t_hash, "accumulate_s": 0.0, "write_s": 0.0}
    adapter.to(device)
    probe = next(tokens.batches(1, device))
    order, calls = execution_order(adapter, probe)
    early_stop = max(calls.values()) == 1
    if dist is None:
        groups, partial = _groups(adapter, order, max_hessian_bytes), out / "partial.safetensors"
    else:
        from .distributed import rank_groups

        groups, partial = rank_groups(adapter, order, max_hessian_bytes, dist), out / f"partial.rank{dist.rank}.safetensors"
    n_batches = -(-len(tokens) // batch_size)
    pbar = _progress(progress and main, len(groups) * n_batches)
    try:
        for gi, group in enumerate(groups):
            if all(hessian_path(out, n).is_file() for n in group):
                pbar.advance(n_batches)
                continue
            _run_group(adapter, tokens, out, group, gi, device, batch_size, abits, asigned, (checkpoint_every, checkpoint_s),
                       early_stop and (dist is not None or gi < len(groups) - 1), pbar, on_batch, timing, partial, store)
    finally:
        pbar.stop()
    sync()  # every layer's file is written
    fmeta = None
    if floss:
        t_f = time.perf_counter()
        collect_fisher(adapter, tokens, out, floss, device, batch_size, seed=int(tokens.spec.get("seed") or 0),
                       checkpoint_s=checkpoint_s, checkpoint_every=checkpoint_every, dist=dist)
        timing["fisher_s"] = time.perf_counter() - t_f
    if not main:
        sync()  # rank 0 writes the index
        return out
    for stale in out.glob("partial*.safetensors"):  # left by an interrupted run with another --world
        stale.unlink(missing_ok=True)
    if floss:
        from .fisher import load_fisher

        fmeta = {"loss": floss, "n_units": load_fisher(out)[0]["n_units"], "file": "fisher.safetensors"}
    layers = []
    for name in order:
        lin = adapter.layer(name)
        with safe_open(str(hessian_path(out, name)), "pt") as f:
            n_tok = int(f.get_tensor("n_tokens"))
        layers.append({"name": name, "in_features": lin.in_features, "out_features": lin.out_features, "tokens": n_tok})
    meta = provenance(model=adapter.name, model_sha256=adapter.sha256(), tokens_sha256=tokens.sha256()) | {
        "model": adapter.name, "model_source": adapter.source, "model_sha256": adapter.sha256(), "data": tokens.spec,
        "seed": tokens.spec.get("seed"), "n_tokens": tokens.n_tokens, "device": device, "batch_size": batch_size,
        "abits": abits, "asigned": asigned, "act_scale_rule": ACT_SCALE_RULE, "n_layers": len(layers), "fisher": fmeta,
        "hessian": store,
        "wall_s": round(time.perf_counter() - t0, 3), "timing_s": {k: round(v, 4) for k, v in timing.items()}} | (extra_meta or {})
    save_calibration_index(out, layers, meta)
    sync()
    return out


def _accumulate(adapter, tokens, group, device, batch_size, abits, asigned, early_stop, start=0, accs=None,
                after_batch=None) -> dict:
    """Stream ``tokens`` through the model, summing every layer of ``group`` into an :class:`_Acc`
    (batches before ``start`` are skipped: resumed from a checkpoint)."""
    accs = accs or {n: _Acc(n, adapter.layer(n).in_features, abits, asigned, device) for n in group}
    state = {"mask": None}
    last = group[-1]

    def hook(m, inputs, output, name):
        accs[name].add(inputs[0].detach(), state["mask"])
        if early_stop and name == last:
            raise _Stop

    hooks = [adapter.layer(n).module.register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n)) for n in group]
    try:
        for bi, batch in enumerate(tokens.batches(batch_size, device)):
            if bi >= start:
                state["mask"] = batch["attention_mask"].bool()
                try:
                    adapter.forward(batch)
                except _Stop:
                    pass
            if after_batch:
                after_batch(bi, accs, bi < start)
    finally:
        for h in hooks:
            h.remove()
    return accs


def _finish(adapter, name: str, res: dict, store: dict) -> dict:
    """The tensors of one layer's file: ``WHW_rows`` added for the blocks layout (needs the weight)."""
    if store.get("layout") == "blocks":
        W = adapter.layer(name).weight().to(res["H"].device, torch.float64)
        res["WHW_rows"] = ((W @ res["H"]) * W).sum(1).cpu()
    return res


def recompute_hessians(adapter: ModelAdapter, tokens: TokenBatch, names: list[str], device: str = "cpu",
                       batch_size: int = 8, abits: int = 8, asigned: bool = True) -> dict[str, torch.Tensor]:
    """Full float64 ``H`` of the layers ``names`` from the calibration tokens: the same sums over
    the same batches as :func:`calibrate`, so bit-identical to a stored full Hessian (same device
    and batch size). What GPTQ uses when the folder keeps only diagonal blocks."""
    order, calls = execution_order(adapter, next(tokens.batches(1, device)))
    want = set(names)
    group = [n for n in order if n in want]
    accs = _accumulate(adapter, tokens, group, device, batch_size, abits, asigned, max(calls.values()) == 1)
    return {n: accs[n].result()["H"] for n in group}


def _run_group(adapter, tokens, out, group, gi, device, batch_size, abits, asigned, checkpoint_every, early_stop,
               pbar, on_batch, timing: dict, partial: Path, store: dict | None = None) -> None:
    accs = {n: _Acc(n, adapter.layer(n).in_features, abits, asigned, device) for n in group}
    start = 0
    if partial.is_file():
        with safe_open(str(partial), "pt") as f:
            md = f.metadata() or {}
        if json.loads(md.get("layers", "[]")) == group:
            st = load_file(str(partial), device=str(device))
            for a in accs.values():
                a.load(st)
            start = int(md["batches_done"])
    every, secs = checkpoint_every
    ck = {"t": time.perf_counter()}

    def after(bi, accs_, skipped):
        if not skipped:
            due = (every and (bi + 1) % every == 0) or time.perf_counter() - ck["t"] >= secs
            if due and (bi + 1) * batch_size < len(tokens):
                ck["t"] = time.perf_counter()
                st = {k: v for a in accs_.values() for k, v in a.state().items()}
                _save_st(partial, st, {"layers": json.dumps(group), "batches_done": str(bi + 1)})
        pbar.advance(1)
        if on_batch is not None and not skipped:
            on_batch(gi, bi)

    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    t = time.perf_counter()
    _accumulate(adapter, tokens, group, device, batch_size, abits, asigned, early_stop, start, accs, after)
    sync()
    t1 = time.perf_counter()
    store = store or {"layout": "full"}
    for n, a in accs.items():
        save_hessian(out, n, _finish(adapter, n, a.result(), store), store["layout"], store.get("block", BLOCK),
                     store.get("dtype", "float32"))
    partial.unlink(missing_ok=True)
    timing["accumulate_s"] += t1 - t
    timing["write_s"] += time.perf_counter() - t1


class _NoProgress:
    def advance(self, n: int) -> None:
        pass

    def stop(self) -> None:
        pass


class _StepsProgress:
    def __init__(self, total: int):
        from ..progress import Steps

        self.p = Steps("calibrating (batches x layer groups)", total).__enter__()

    def advance(self, n: int) -> None:
        self.p.advance(n)

    def stop(self) -> None:
        self.p.__exit__(None, None, None)


def _progress(on: bool, total: int):
    return _StepsProgress(total) if on else _NoProgress()


# -- reading a calibration folder ----------------------------------------------------------

def load_calibration(calib_dir: str | Path) -> tuple[dict, list[dict]]:
    """``(meta, layers)`` of a finished calibration folder."""
    d = Path(calib_dir)
    if not d.is_dir():
        raise UserError(f"calibration folder {d} not found; run `halo-opt calibrate --out {d}` first")
    if not (d / "meta.json").is_file():
        raise UserError(f"calibration in {d} is incomplete (no meta.json); rerun the same `halo-opt calibrate` command to resume it")
    return read_json(d / "meta.json", "calibration metadata"), read_json(d / "layers.json", "calibration layer list")


def load_hessian(calib_dir: str | Path, layer: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of one layer (``H``, ``n_tokens``, ``act_hist``, ``act_scale``, ...)."""
    p = hessian_path(calib_dir, layer)
    if not p.is_file():
        raise UserError(f"no Hessian for layer {layer!r} in {calib_dir}; recalibrate with this layer planned")
    try:
        return load_file(str(p), device=device)
    except Exception as e:
        raise UserError(f"Hessian file {p} is unreadable ({type(e).__name__}); recalibrate") from None


def hessian_layout(calib_dir: str | Path, layer: str) -> dict:
    """``{"layout": "full"}`` or ``{"layout": "blocks", "block": B, "dtype": ...}`` of one layer's
    file (files written before the blocks layout are full)."""
    p = hessian_path(calib_dir, layer)
    if not p.is_file():
        raise UserError(f"no Hessian for layer {layer!r} in {calib_dir}; recalibrate with this layer planned")
    with safe_open(str(p), "pt") as f:
        md = f.metadata() or {}
    if md.get("layout", "full") == "full":
        return {"layout": "full"}
    return {"layout": "blocks", "block": int(md["block"]), "dtype": md.get("dtype", "float32"), "in_features": int(md["in_features"])}


def load_hessian_blocks(calib_dir: str | Path, layer: str, width: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(blocks [nb, width, width] float64, diag [K] float64)``: the diagonal blocks of H at
    column-block ``width`` (the cost tables' tile columns) — sliced from a full H, or from stored
    blocks when ``width`` divides their width (exact sub-blocks); another width is refused."""
    lay = hessian_layout(calib_dir, layer)
    t = load_hessian(calib_dir, layer, device)
    if lay["layout"] == "full":
        H = t["H"].to(torch.float64)
        return diag_blocks(H, width), torch.diagonal(H).clone()
    B, K = lay["block"], lay["in_features"]
    if B % width and not (width >= K and B >= K):
        raise UserError(f"calibration {calib_dir} stores Hessian blocks of width {B}; tile columns {width} must divide it "
                        f"(use a tile width dividing {B}, or recalibrate with --hessian-block {width} or --hessian full)")
    Hb = t["H_blocks"].to(torch.float64)
    if B % width:  # one stored block holds the whole layer
        return diag_blocks(Hb[0, :K, :K], width), t["H_diag"].to(torch.float64)
    nb, k = -(-K // width), B // width
    sub = torch.stack([Hb[:, i * width:(i + 1) * width, i * width:(i + 1) * width] for i in range(k)], 1)
    return sub.reshape(-1, width, width)[:nb].contiguous(), t["H_diag"].to(torch.float64)


def load_row_terms(calib_dir: str | Path, layer: str, W: torch.Tensor, damp: float = 0.0) -> torch.Tensor:
    """``(W (H + damp·I) Wᵀ)_rr`` [N] float64 — exact from a full H, or from the stored ``WHW_rows``
    (computed at calibration from the full H) plus ``damp·‖w_r‖²``."""
    t = load_hessian(calib_dir, layer, str(W.device))
    W = W.to(torch.float64)
    if "H" in t:
        H = t["H"].to(torch.float64)
        if damp:
            H = H + damp * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        return ((W @ H) * W).sum(1)
    if "WHW_rows" not in t:
        raise UserError(f"Hessian blocks of layer {layer!r} in {calib_dir} lack WHW_rows; recalibrate")
    return t["WHW_rows"].to(W.device, torch.float64) + damp * (W * W).sum(1)


def block_diagonal_hessian(calib_dir: str | Path, layer: str, device: str = "cpu") -> torch.Tensor:
    """H [K, K] float64 if the folder keeps it, else the block-diagonal matrix of its stored blocks
    (what RTN's per-tile scale search and the block-diagonal error read; GPTQ needs the full H:
    :func:`recompute_hessians`)."""
    lay = hessian_layout(calib_dir, layer)
    t = load_hessian(calib_dir, layer, device)
    if lay["layout"] == "full":
        return t["H"].to(torch.float64)
    B, K = lay["block"], lay["in_features"]
    Hb = t["H_blocks"].to(torch.float64)
    H = torch.zeros(K, K, dtype=torch.float64, device=Hb.device)
    for j in range(Hb.shape[0]):
        k = min(B, K - j * B)
        H[j * B:j * B + k, j * B:j * B + k] = Hb[j, :k, :k]
    return H


def calibration_tokens(meta: dict, tokenizer, max_length: int | None = None) -> TokenBatch:
    """The calibration's token batch rebuilt from its ``meta.json`` data spec (same text files or
    stdlib split, sizes and seed), checked against the recorded ``tokens_sha256``."""
    from .text import calibration_batch

    d = meta.get("data") or {}
    if d.get("source") not in ("files", "python-stdlib-docstrings"):
        raise UserError("this calibration's tokens cannot be rebuilt (made from an in-memory batch); "
                        "recalibrate with --hessian full, or pass the tokens to recompute_hessians")
    files = d.get("files") if d["source"] == "files" else None
    tb = calibration_batch(tokenizer, files, int(d["sequences"]), int(d["seq_len"]), int(d["seed"]), int(d.get("split_seed", 0)),
                           float(d.get("heldout_frac", 0.2)), max_length=max_length)
    if tb.sha256() != d.get("tokens_sha256"):
        raise UserError("the calibration text changed since calibration (token hash differs); recalibrate, or use --hessian full")
    return tb


def convert_calibration(src: str | Path, dst: str | Path, adapter: ModelAdapter, block: int = BLOCK,
                        dtype: str = "float32") -> Path:
    """A ``blocks`` copy of a full calibration folder (one layer's H in memory at a time), through
    :func:`save_hessian` / :func:`save_calibration_index`: shrink an older folder without recalibrating."""
    import shutil

    meta, layers = load_calibration(src)
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise UserError(f"{dst} exists; remove it or pick another folder")
    if adapter.sha256() != meta.get("model_sha256"):
        raise UserError(f"model weights differ from those calibrated in {src} (SHA-256 mismatch)")
    for lay in layers:
        t = load_hessian(src, lay["name"])
        if "H" not in t:
            raise UserError(f"{src} already stores Hessian blocks")
        save_hessian(dst, lay["name"], _finish(adapter, lay["name"], dict(t), {"layout": "blocks"}), "blocks", block, dtype)
    for extra in ("fisher.safetensors",):
        if (src / extra).is_file():
            shutil.copy2(src / extra, dst / extra)
    save_calibration_index(dst, layers, meta | {"hessian": {"layout": "blocks", "block": block, "dtype": dtype},
                                                "converted_from": str(src)})
    return dst
