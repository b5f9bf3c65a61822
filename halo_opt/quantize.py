"""Codebook quantizer shared by the cost tables and the executor (one implementation).

A weight row ``w`` (length K) is stored as integer codes ``q`` from a codebook ``c`` (a sorted
set of integers) times a positive scale ``s``: ``ŵ = s·Q_c(w/s)``, where ``Q_c`` rounds to the
nearest code (ties go to the code of smaller magnitude, then to the smaller code, so the
result is deterministic). The error of a row under a layer-input Hessian ``H`` (K×K) is the
quadratic form

    e(s) = Δw H Δwᵀ,   Δw = ŵ − w,

which, with ``H = (2/n) Σ_t x_t x_tᵀ``, is ``(2/n) Σ_t (Δw·x_t)²``: the increase of that output
channel's squared error summed over the n calibration tokens (×2/n). :func:`search_scales`
picks, per row, the scale on the grid ``s = f · max|w| / max|c|`` (factors ``f`` from
:func:`scale_grid`) that minimises ``e(s)``. An all-zero row gets scale 0 and ``ŵ = 0``.

Reference arithmetic is float64; ``fast=True`` searches the grid in float32 (half the memory
traffic, twice the GEMM rate on CPU) and then re-evaluates the chosen scale in float64, so the
returned errors are float64-exact for the returned scales (the fast path can only differ from
the reference where two grid points tie to float32 precision).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from .errors import UserError

#: Working-set budget (bytes) of one batched grid evaluation, per device type; rows are processed
#: in chunks below it. Small on CPU: large temporaries go through mmap/page faults and run ~10x slower.
CHUNK_BYTES = {"cpu": 4 << 20, "cuda": 1 << 30}


def codes_tensor(codes: Iterable[int] | torch.Tensor, dtype=torch.float64, device=None) -> torch.Tensor:
    """Sorted, de-duplicated 1-D tensor of the integer ``codes`` (as ``dtype``)."""
    c = getattr(codes, "codes", codes)  # accept a Codebook
    c = sorted({int(v) for v in (c.tolist() if isinstance(c, torch.Tensor) else c)})
    if not c:
        raise UserError("empty codebook; a codebook needs at least one code (normally including 0)")
    return torch.tensor(c, dtype=dtype, device=device)


def _nearest_lut(c: torch.Tensor) -> torch.Tensor:
    """Nearest-code table over half-integer cells of ``x`` (codes are integers, so every decision
    boundary ``(a+b)/2`` is a multiple of 1/2). Cell ``t = floor(2x)`` (clamped to
    ``[2·c_min − 1, 2·c_max]``); entry ``2(t − t_min)`` is the code for ``x`` inside the open cell
    ``(t/2, (t+1)/2)``, entry ``2(t − t_min) + 1`` the code for ``x = t/2`` exactly (tie rule)."""
    lo, hi = int(c[0]), int(c[-1])
    t = torch.arange(2 * lo - 1, 2 * hi + 1, dtype=torch.float64)
    x = torch.stack([(t + 0.5) / 2, t / 2], 1).reshape(-1)           # open-cell centre, cell edge
    cd = c.to("cpu", torch.float64)
    i = torch.searchsorted(cd, x).clamp_(1, max(len(cd) - 1, 1))
    a, b = cd[i - 1], cd[(i if len(cd) > 1 else i - 1)]
    pick_b = ((b - x) < (x - a)) | (((b - x) == (x - a)) & (b.abs() < a.abs()))
    return torch.where(pick_b, b, a)


def quantize_to_codes(w: torch.Tensor, scale: torch.Tensor, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """Round ``w/scale`` to the nearest code: returns ``(q int64, ŵ = q·scale)`` shaped like ``w``.

    ``scale`` broadcasts against ``w`` (e.g. ``[R, 1]`` for per-row scales); a zero scale
    gives ``ŵ = 0`` with ``q`` the code nearest to 0. Ties (``w/s`` exactly between two codes)
    go to the code of smaller magnitude, then to the smaller code. Implemented as a table
    lookup on ``floor(2·w/s)`` (exact: ``2·x`` is exact in floating point).
    """
    c = codes_tensor(codes, device=w.device)
    dt = w.dtype if w.is_floating_point() else torch.float64
    q, w_hat = _quantize(w.to(dt), torch.as_tensor(scale, dtype=dt, device=w.device), c, _nearest_lut(c).to(w.device, dt))
    return q.to(torch.int64), w_hat


def _quantize(w: torch.Tensor, scale: torch.Tensor, c: torch.Tensor, lut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q as float, ŵ)`` with a precomputed :func:`_nearest_lut` table (in ``w``'s dtype)."""
    tmin = 2 * int(c[0]) - 1
    y = 2 * (w / torch.where(scale > 0, scale, torch.ones_like(scale)))
    y = torch.where(scale > 0, y, torch.zeros_like(y))
    t = torch.floor(y).clamp_(tmin, 2 * int(c[-1]))
    idx = ((t - tmin) * 2 + (y == t)).to(torch.int64)
    q = lut[idx]
    return q, q * scale


def scale_grid(n_grid: int = 15, lo: float = 0.5, hi: float = 1.2) -> torch.Tensor:
    """Scale factors ``f`` (float64) tried around ``max|w|/max|c|``; always includes 1.0."""
    if n_grid < 1 or not (0 < lo <= 1 <= hi):
        raise UserError(f"scale grid needs n_grid >= 1 and 0 < lo <= 1 <= hi, got n_grid={n_grid} lo={lo} hi={hi}")
    f = torch.linspace(lo, hi, n_grid, dtype=torch.float64) if n_grid > 1 else torch.ones(1, dtype=torch.float64)
    f[torch.argmin((f - 1).abs())] = 1.0
    return f


def row_errors(W: torch.Tensor, H: torch.Tensor, codes, scale: torch.Tensor) -> torch.Tensor:
    """``e_r = Δw_r H Δw_rᵀ`` per row for the given per-row ``scale`` [R] (dtype of ``W``)."""
    _, w_hat = quantize_to_codes(W, scale.reshape(-1, 1), codes)
    d = w_hat - W
    return ((d @ H.to(d.dtype)) * d).sum(-1)


def search_scales(W: torch.Tensor, H: torch.Tensor, codes, factors: torch.Tensor | None = None,
                  fast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row grid search of the scale: returns ``(s [R] float64, e [R] float64)``.

    ``s_r = f* · max|w_r| / max|c|`` with ``f*`` the first grid factor minimising
    ``Δw_r H Δw_rᵀ``; ``e_r`` is that minimum evaluated in float64. ``W`` [R, K], ``H`` [K, K].
    """
    if W.ndim != 2 or H.shape != (W.shape[1], W.shape[1]):
        raise ValueError(f"shapes W {tuple(W.shape)} and H {tuple(H.shape)} do not match ([R,K] and [K,K])")
    factors = scale_grid() if factors is None else factors.to(torch.float64)
    dev = W.device
    c64 = codes_tensor(codes, device=dev)
    W64, H64 = W.to(torch.float64).contiguous(), H.to(torch.float64).contiguous()
    s0 = W64.abs().amax(-1) / c64.abs().max().clamp_min(1)
    cand = factors.to(dev)[:, None] * s0[None, :]                        # [F, R]
    work = torch.float32 if fast else torch.float64
    Wk, Hk = W64.to(work), H64.to(work)
    lut = _nearest_lut(c64).to(dev, work)
    R, K = W.shape
    budget = CHUNK_BYTES.get(dev.type, CHUNK_BYTES["cpu"])
    step = max(1, budget // (len(factors) * K * (4 if fast else 8) * 12))
    best = torch.empty(R, dtype=torch.long, device=dev)
    for r0 in range(0, R, step):
        w = Wk[r0:r0 + step]
        _, w_hat = _quantize(w[None], cand[:, r0:r0 + step, None].to(work), c64, lut)
        d = w_hat - w[None]
        err = ((d @ Hk) * d).sum(-1)                                     # [F, r]
        best[r0:r0 + step] = torch.argmin(err, 0)
    s = cand.gather(0, best[None]).squeeze(0)
    return s, row_errors(W64, H64, c64, s)


def best_scales(W: torch.Tensor, H: torch.Tensor, codes, n_grid: int = 15, lo: float = 0.5, hi: float = 1.2,
                fast: bool = False) -> torch.Tensor:
    """Per-row scale [R] (float64) minimising ``Δw H Δwᵀ`` over :func:`scale_grid` factors."""
    return search_scales(W, H, codes, scale_grid(n_grid, lo, hi), fast)[0]


def tile_errors(W: torch.Tensor, H: torch.Tensor, codebooks: Sequence, n_grid: int = 15, lo: float = 0.5,
                hi: float = 1.2, fast: bool = False) -> torch.Tensor:
    """Error of one tile per codebook: ``[Σ_r min_s Δw_r H Δw_rᵀ for c in codebooks]`` (float64).

    ``W`` is the tile [R, K] (output rows × input columns) and ``H`` the matching K×K block of
    the layer Hessian. ``codebooks`` are code sequences or objects with a ``codes`` attribute.
    """
    f = scale_grid(n_grid, lo, hi)
    return torch.stack([search_scales(W, H, cb, f, fast)[1].sum() for cb in codebooks])
