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

:func:`search_scales_blocks` does the search for every column block of a layer and every codebook
at once (the cost tables' inner loop): codebooks sharing ``max|c|`` share the candidate scales, so
the division/rounding passes are done once per group and only the table lookup and the error GEMM
once per codebook; column blocks go through one batched GEMM. On CUDA with ``fast=True`` a fused
Triton kernel does quantise → ``d·H`` (float32 FMA, no TF32) → row reduction → running argmin over
the grid in registers; the float64 re-evaluation of the chosen scales is shared by both paths.

Floating-point codebooks (issue 17). A codebook of an FP format (:mod:`halo_opt.formats`: FP8
E4M3/E5M2, FP4 E2M1) holds *codes* (bit patterns) that stand for *values*; the quantizer rounds
``w/s`` to the nearest **value** (same tie rule, on values). Every finite FP value is a dyadic
rational, so ``values · 2^k`` are integers for a small ``k`` (E2M1: 1, E4M3: 9): a :class:`Grid`
carries those integer *representatives* and the whole integer machinery above (tables, batched
search, Triton) runs on them with the scale ``s·2^−k`` — exact, as multiplying by a power of two
is exact in binary floating point, so ``rep · s·2^−k`` is bit for bit ``value · s``. For an
integer codebook ``k = 0`` and the representatives are the codes: that path is unchanged.

Two scale rules (``Grid.scale``): ``"row"`` (one scale per output row and tile, the grid search
above: integer codebooks, and e.g. per-channel FP8) and ``"mx"`` (OCP Microscaling: one E8M0
power-of-two scale per row and :data:`MX_BLOCK` = 32 consecutive input columns,
:func:`mx_block_scales`: the OCP rule ``2^(floor(log2 amax) − floor(log2 max|c|))`` and, with
``rule="search"``, the one of ``{1, 2, ½}×`` that rule minimising the block's ``Δw H_bb Δwᵀ``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .errors import UserError

try:  # fused CUDA grid search (Triton ships with CUDA builds of torch); absent on CPU-only installs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

#: Working-set budget (bytes) of one batched grid evaluation, per device type; rows are processed
#: in chunks below it. Small on CPU: large temporaries go through mmap/page faults and run ~10x slower.
CHUNK_BYTES = {"cpu": 4 << 20, "cuda": 1 << 30}


#: Columns per E8M0 scale of the ``"mx"`` rule (OCP MX v1.0 block size).
MX_BLOCK = 32
SCALE_RULES = ("row", "mx")


@dataclass(frozen=True, eq=False)
class Grid:
    """What the quantizer needs of a codebook: its codes, the value each stands for, and integer
    representatives ``rep = values · 2^shift`` (sorted by value, one entry per distinct value; of
    codes with equal value, e.g. FP ``±0``, the smaller code). ``scale``: ``"row"`` or ``"mx"``."""

    codes: torch.Tensor    # int64, aligned with values
    values: torch.Tensor   # float64, ascending, distinct
    rep: torch.Tensor      # float64 integers
    shift: int
    format: str = "int"
    scale: str = "row"

    @property
    def is_int(self) -> bool:
        return self.shift == 0 and torch.equal(self.values, self.codes.double())

    def to(self, *args, **kwargs) -> "Grid":  # grids live on the CPU; quantizers move what they need
        return self

    def code_of(self, v: torch.Tensor) -> torch.Tensor:
        """Codes (int64) of values ``v`` (each one of ``values``)."""
        vals = self.values.to(v.device, torch.float64)
        return self.codes.to(v.device)[torch.searchsorted(vals, v.double()).clamp_(max=len(vals) - 1)]


def grid_of(cb, fmt: str | None = None, scale: str | None = None) -> Grid:
    """The :class:`Grid` of a codebook: a :class:`Grid`, a code sequence/tensor (integer codes), or an
    object/dict with ``codes`` and optionally ``format`` (default: integer, code = value) and ``scale``."""
    if isinstance(cb, Grid):
        return cb
    get = (lambda k: cb.get(k)) if isinstance(cb, dict) else (lambda k: getattr(cb, k, None))
    fmt = fmt or get("format") or None
    scale = scale or get("scale") or "row"
    if scale not in SCALE_RULES:
        raise UserError(f"unknown scale rule {scale!r}; use one of {', '.join(SCALE_RULES)}")
    codes = codes_tensor(cb["codes"] if isinstance(cb, dict) else getattr(cb, "codes", cb)).long()
    from .formats import get_format

    f = get_format(fmt) if fmt else None
    given = get("values") if not isinstance(cb, (list, tuple, range, torch.Tensor)) else None
    if f is None and given is not None and len(given) == len(codes):   # e.g. hardware.codebooks.Codebook.values
        src = cb["codes"] if isinstance(cb, dict) else cb.codes
        by_code = dict(zip((int(c) for c in src), (float(v) for v in given)))
        vals = torch.tensor([by_code[int(c)] for c in codes], dtype=torch.float64)
        if not torch.equal(vals, codes.double()):
            return _value_grid(codes, vals, "values", scale)
    if f is None or not f.is_float:
        return Grid(codes, codes.double(), codes.double(), 0, f.name if f else "int", scale)
    return _value_grid(codes, torch.tensor(f.value(codes.numpy()), dtype=torch.float64), f.name, scale)


def _value_grid(codes: torch.Tensor, vals: torch.Tensor, fmt: str, scale: str) -> Grid:
    """A :class:`Grid` of codes standing for dyadic ``vals`` (sorted by value, distinct values)."""
    import numpy as np

    order = torch.from_numpy(np.lexsort((codes.numpy(), vals.numpy())))   # by value, then code
    vals, codes = vals[order], codes[order]
    keep = torch.ones(len(vals), dtype=torch.bool)
    keep[1:] = vals[1:] != vals[:-1]
    vals, codes = vals[keep], codes[keep]
    shift = 0
    while not torch.equal(torch.ldexp(vals, torch.tensor(shift)).frac(), torch.zeros_like(vals)):
        shift += 1
    if float(torch.ldexp(vals, torch.tensor(shift)).abs().max()) > 2.0 ** 52:
        raise UserError("codebook values span too many binary digits (value·2^k must stay below 2^52 for exact "
                        "rounding); use values of a number format (FP8, FP4) or integers")
    return Grid(codes, vals, torch.ldexp(vals, torch.tensor(shift)), shift, fmt, scale)


def quantize_to_grid(w: torch.Tensor, scale: torch.Tensor, cb) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round ``w/scale`` to the nearest value of codebook ``cb``: ``(codes int64, values, ŵ = value·scale)``.
    For an integer codebook this is :func:`quantize_to_codes` (codes = values)."""
    g = grid_of(cb)
    dt = w.dtype if w.is_floating_point() else torch.float64
    s = torch.as_tensor(scale, dtype=dt, device=w.device)
    rep = g.rep.to(w.device)
    q, w_hat = _quantize(w.to(dt), torch.ldexp(s, torch.tensor(-g.shift, device=w.device)), rep,
                         _lut_or_none(rep, w.device, dt))
    v = torch.ldexp(q.double(), torch.tensor(-g.shift, device=w.device))
    return (q.to(torch.int64) if g.is_int else g.code_of(v)), v.to(dt), w_hat


def codes_tensor(codes: Iterable[int] | torch.Tensor, dtype=torch.float64, device=None) -> torch.Tensor:
    """Sorted, de-duplicated 1-D tensor of the integer ``codes`` (as ``dtype``)."""
    c = getattr(codes, "codes", codes)  # accept a Codebook
    c = sorted({int(v) for v in (c.tolist() if isinstance(c, torch.Tensor) else c)})
    if not c:
        raise UserError("empty codebook; a codebook needs at least one code (normally including 0)")
    return torch.tensor(c, dtype=dtype, device=device)


#: Tables of wide code ranges (FP grids: up to 2^21 entries), kept across calls (key: codes, range).
_LUT_CACHE: dict = {}


def _nearest_lut(c: torch.Tensor, lo: int | None = None, hi: int | None = None) -> torch.Tensor:
    """:func:`_nearest_lut_uncached`, cached for wide ranges (> 4096 codes wide; never modified in place)."""
    if float(c[-1] - c[0]) <= 4096:
        return _nearest_lut_uncached(c, lo, hi)
    key = (c.to("cpu", torch.float64).numpy().tobytes(), lo, hi)
    if key not in _LUT_CACHE:
        if len(_LUT_CACHE) >= 16:
            _LUT_CACHE.pop(next(iter(_LUT_CACHE)))
        _LUT_CACHE[key] = _nearest_lut_uncached(c, lo, hi)
    return _LUT_CACHE[key]


def _nearest_lut_uncached(c: torch.Tensor, lo: int | None = None, hi: int | None = None) -> torch.Tensor:
    """Nearest-code table over half-integer cells of ``x`` (codes are integers, so every decision
    boundary ``(a+b)/2`` is a multiple of 1/2). Cell ``t = floor(2x)`` (clamped to
    ``[2·lo − 1, 2·hi]``, by default ``lo, hi = c_min, c_max``; a wider range gives the same codes);
    entry ``2(t − t_min)`` is the code for ``x`` inside the open cell ``(t/2, (t+1)/2)``, entry
    ``2(t − t_min) + 1`` the code for ``x = t/2`` exactly (tie rule)."""
    lo, hi = (int(c[0]) if lo is None else lo), (int(c[-1]) if hi is None else hi)
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
    if isinstance(codes, (Grid, dict)) or getattr(codes, "format", None):
        g = grid_of(codes)
        if not g.is_int:                                               # FP codebook: codes are bit patterns
            q, _, w_hat = quantize_to_grid(w, scale, g)
            return q, w_hat
        codes = g.codes
    c = codes_tensor(codes, device=w.device)
    dt = w.dtype if w.is_floating_point() else torch.float64
    q, w_hat = _quantize(w.to(dt), torch.as_tensor(scale, dtype=dt, device=w.device), c, _nearest_lut(c).to(w.device, dt))
    return q.to(torch.int64), w_hat


#: Widest code range (max − min of the integer representatives) quantised through a lookup table;
#: wider grids (FP8 E5M2: 2^32) go through :func:`_nearest_sorted` (same results, slower).
LUT_MAX_RANGE = 1 << 19


def _lut_ok(c: torch.Tensor) -> bool:
    return float(c[-1] - c[0]) <= LUT_MAX_RANGE


def _lut_or_none(c: torch.Tensor, device, dtype):
    return _nearest_lut(c).to(device, dtype) if _lut_ok(c) else None


def _nearest_sorted(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Nearest code of sorted ``c`` to ``x`` by binary search over the midpoints (ties: smaller
    magnitude, then smaller code), the same decisions as the table of :func:`_nearest_lut`."""
    cd = c.to(x.device, x.dtype)
    if len(cd) == 1:
        return cd.expand_as(x).clone()
    mids = (cd[1:] + cd[:-1]) / 2                                        # exact: codes are integers
    i = torch.searchsorted(mids, x.contiguous())                         # x in (mids[i-1], mids[i]]
    lo = cd[i]
    tie = (i < len(mids)) & (x == mids[i.clamp(max=len(mids) - 1)])
    hi = cd[(i + 1).clamp(max=len(cd) - 1)]
    return torch.where(tie & (hi.abs() < lo.abs()), hi, lo)


def _quantize(w: torch.Tensor, scale: torch.Tensor, c: torch.Tensor, lut: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q as float, ŵ)`` with a precomputed :func:`_nearest_lut` table (in ``w``'s dtype), or
    ``lut=None``: :func:`_nearest_sorted` (for wide code ranges)."""
    if lut is None:
        x = w / torch.where(scale > 0, scale, torch.ones_like(scale))
        x = torch.where(scale > 0, x, torch.zeros_like(x))
        lo, hi = c[0].to(x.dtype), c[-1].to(x.dtype)
        q = _nearest_sorted(x.clamp(min=lo, max=hi), c)
        return q, q * scale
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
                  fast: bool = False, errors: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row grid search of the scale: returns ``(s [R] float64, e [R] float64)``.

    ``s_r = f* · max|w_r| / max|c|`` with ``f*`` the first grid factor minimising
    ``Δw_r H Δw_rᵀ``; ``e_r`` is that minimum evaluated in float64 (None with ``errors=False``:
    the executor needs only the scales). ``W`` [R, K], ``H`` [K, K].
    """
    if W.ndim != 2 or H.shape != (W.shape[1], W.shape[1]):
        raise ValueError(f"shapes W {tuple(W.shape)} and H {tuple(H.shape)} do not match ([R,K] and [K,K])")
    s, e = search_scales_blocks(W, H, max(W.shape[1], 1), [codes], factors, fast, errors=errors)
    return s[0, :, 0], None if e is None else e[0, :, 0]


def search_scales_blocks(W: torch.Tensor, H: torch.Tensor, width: int, codebooks: Sequence,
                         factors: torch.Tensor | None = None, fast: bool = False,
                         backend: str = "auto", errors: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`search_scales` on every column block of a layer, for every codebook: ``(s, e)`` [C, N, n_b].

    Block ``j`` holds columns ``[j·width, min((j+1)·width, K))`` (the last may be narrower);
    ``s[c, :, j], e[c, :, j] = search_scales(W[:, blk], H[blk, blk], codebooks[c], factors, fast)``.
    ``backend``: ``"torch"`` (batched, any device), ``"triton"`` (fused CUDA kernel, ``fast`` only,
    ``width`` ≤ 128) or ``"auto"`` (Triton where it applies). Results on device of ``W``, float64;
    ``errors=False`` skips the float64 evaluation of ``e`` (returned as None; ``s`` is the same).
    """
    N, K = W.shape
    if width < 1:
        raise UserError(f"column block width must be >= 1, got {width}")
    nb = -(-K // width)
    blocks = H.dim() == 3  # H given as its diagonal blocks [nb, width, width] (zero-padded): all the search reads
    if H.shape != ((nb, width, width) if blocks else (K, K)):
        raise ValueError(f"shapes W {tuple(W.shape)} and H {tuple(H.shape)} do not match ([R,K] and [K,K] or [nb,width,width])")
    factors = (scale_grid() if factors is None else factors).to(W.device, torch.float64)
    grids = [grid_of(cb) for cb in codebooks]
    books = [g.rep for g in grids]                                       # on the CPU: tables and bounds (= codes for integers)
    luts_ok = all(_lut_ok(c) for c in books)
    use_triton = backend == "triton" or (backend == "auto" and fast and W.is_cuda and triton is not None
                                          and width <= TRITON_MAX_WIDTH and luts_ok)
    if use_triton and not (fast and W.is_cuda and triton is not None and width <= TRITON_MAX_WIDTH and luts_ok):
        raise UserError(f"backend='triton' needs fast=True, a CUDA tensor, Triton, width <= {TRITON_MAX_WIDTH} and code "
                        f"ranges <= {LUT_MAX_RANGE} (not FP8 E5M2); use backend='torch'")
    if backend not in ("auto", "torch", "triton"):
        raise UserError(f"unknown backend {backend!r}; use 'auto', 'torch' or 'triton'")
    W64 = W.to(torch.float64)
    Wp = torch.nn.functional.pad(W64, (0, nb * width - K)).view(N, nb, width)     # zero-padded column blocks
    cmax = torch.stack([cmax_of(c) for c in books]).to(W.device)
    s0 = Wp.abs().amax(-1)[None] / cmax[:, None, None]                   # [C, N, nb]
    if use_triton:
        Hf = _from_blocks(H, K) if blocks else H   # the kernels read the diagonal blocks of a [K, K] matrix
        s = factors[_best_triton(W, Hf, s0, books, factors, width)] * s0   # the chosen candidate, bit for bit
        if not errors:
            return _value_scales(s, grids), None
        if TRITON_CONFIG.get("float64_eval") == "triton":
            return _value_scales(s, grids), _block_errors_triton(W, Hf, books, s, width)
        return _value_scales(s, grids), _block_errors(Wp, H.to(torch.float64) if blocks else _diag_blocks(H, width, nb), books, s)
    Hp = H.to(torch.float64) if blocks else _diag_blocks(H, width, nb)
    s = factors[_best_torch(Wp, Hp, s0, books, factors, torch.float32 if fast else torch.float64)] * s0
    return _value_scales(s, grids), _block_errors(Wp, Hp, books, s) if errors else None


def _value_scales(s: torch.Tensor, grids: list[Grid]) -> torch.Tensor:
    """Scales of the representatives (``value·2^shift``) back to scales of the values (exact)."""
    if all(g.shift == 0 for g in grids):
        return s
    k = torch.tensor([g.shift for g in grids], device=s.device).view(-1, *([1] * (s.ndim - 1)))
    return torch.ldexp(s, k)


def mx_block_scales(W: torch.Tensor, H: torch.Tensor, cb, rule: str = "search", block: int = MX_BLOCK) -> torch.Tensor:
    """E8M0 scales ``s`` [N, ⌈K/block⌉] (float64 powers of two; 0 for an all-zero block) of codebook ``cb``.

    ``"ocp"``: OCP MX v1.0 §6.3, ``s = 2^(floor(log2 amax) − e_max)`` with ``amax`` the block's
    ``max|w|`` and ``e_max = floor(log2 max|c|)`` the codebook's largest exponent (E2M1: 2, E4M3: 8);
    values above ``max|c|`` saturate. ``"search"``: that ``s`` times the first of ``(1, 2, ½)``
    minimising ``Δw H_bb Δwᵀ`` over the block's diagonal block of ``H`` (float64). Exponents are
    clamped to E8M0's range −127..127.
    """
    if rule not in ("ocp", "search"):
        raise UserError(f"unknown MX scale rule {rule!r}; use 'ocp' or 'search'")
    g = grid_of(cb)
    N, K = W.shape
    nb = -(-K // block)
    W64 = W.to(torch.float64)
    Wp = torch.nn.functional.pad(W64, (0, nb * block - K)).view(N, nb, block)
    amax = Wp.abs().amax(-1)
    e_max = math.floor(math.log2(float(g.values.abs().max().clamp_min(2.0 ** -126))))
    e = (torch.frexp(amax)[1] - 1 - e_max).clamp_(-127, 127)           # floor(log2 amax) − e_max, exact
    s0 = torch.where(amax > 0, torch.ldexp(torch.ones_like(amax), e), torch.zeros_like(amax))
    if rule == "ocp":
        return s0
    f = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, device=W.device)
    s0r = torch.ldexp(s0, torch.tensor(-g.shift, device=W.device))[None]
    best = _best_torch(Wp, _diag_blocks(H.to(W.device, torch.float64), block, nb), s0r, [g.rep], f, torch.float64)[0]
    s = f[best] * s0
    lo, hi = 2.0 ** -127, 2.0 ** 127
    return torch.where(s > 0, s.clamp(lo, hi), s)


def col_block_errors(D: torch.Tensor, H: torch.Tensor, width: int) -> torch.Tensor:
    """Float64 ``Δw_r H_jj Δw_rᵀ`` per row and column block of ``width`` columns: [N, ⌈K/width⌉]."""
    N, K = D.shape
    nb = -(-K // width)
    Dp = torch.nn.functional.pad(D.to(torch.float64), (0, nb * width - K)).view(N, nb, width).transpose(0, 1)
    Hp = _diag_blocks(H.to(D.device, torch.float64), width, nb)
    return (torch.bmm(Dp, Hp) * Dp).sum(-1).T


def mx_tile_errors(W: torch.Tensor, H: torch.Tensor, width: int, cb, rule: str = "search",
                   block: int = MX_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s [N, ⌈K/block⌉], e [N, ⌈K/width⌉])`` of an ``"mx"`` codebook: block scales from
    :func:`mx_block_scales`, errors ``Δw_r H_jj Δw_rᵀ`` over column blocks of ``width`` (the tiles;
    ``width`` must be a multiple of ``block``, so a scale block never straddles two tiles)."""
    if width % block:
        raise UserError(f"tile width {width} is not a multiple of the MX block ({block} columns); "
                        f"use a tile whose input-column size is a multiple of {block}")
    s = mx_block_scales(W, H, cb, rule, block)
    _, _, w_hat = quantize_to_grid(W.to(torch.float64), s.repeat_interleave(block, 1)[:, :W.shape[1]], cb)
    return s, col_block_errors(w_hat - W.to(torch.float64), H, width)


def _from_blocks(Hb: torch.Tensor, K: int) -> torch.Tensor:
    """The [K, K] block-diagonal matrix of diagonal blocks ``Hb`` [nb, w, w] (zero elsewhere)."""
    nb, w, _ = Hb.shape
    H = torch.zeros(K, K, dtype=Hb.dtype, device=Hb.device)
    for j in range(nb):
        k = min(w, K - j * w)
        H[j * w:j * w + k, j * w:j * w + k] = Hb[j, :k, :k]
    return H


def _diag_blocks(H: torch.Tensor, width: int, nb: int) -> torch.Tensor:
    """The ``nb`` diagonal ``width``×``width`` blocks of ``H`` (float64, zero-padded): [nb, width, width].

    ``H`` is [K, K], or already its diagonal blocks [n, w, w] (a blocks-layout calibration) with
    ``width`` dividing ``w``: then the blocks are the diagonal sub-blocks of those (MX scale blocks
    of 32 columns inside 64- or 128-wide tiles)."""
    if H.dim() == 3:
        w = H.shape[1]
        if w % width:
            raise UserError(f"column blocks of {width} do not divide the stored Hessian blocks of {w}; "
                            f"calibrate with --hessian full or a --hessian-block that {width} divides")
        Hp = torch.zeros(nb, width, width, dtype=torch.float64, device=H.device)
        for j in range(min(nb, H.shape[0] * (w // width))):
            t, o = divmod(j * width, w)
            Hp[j] = H[t, o:o + width, o:o + width]
        return Hp
    K = H.shape[0]
    Hp = torch.zeros(nb, width, width, dtype=torch.float64, device=H.device)
    for j in range(nb):
        k = min(width, K - j * width)
        Hp[j, :k, :k] = H[j * width:j * width + k, j * width:j * width + k]
    return Hp


def _best_torch(Wp: torch.Tensor, Hp: torch.Tensor, s0: torch.Tensor, books: list, factors: torch.Tensor,
                work: torch.dtype) -> torch.Tensor:
    """First grid index minimising ``Δw H Δwᵀ`` per codebook, row, block: [C, N, nb] (torch, any device).

    Codebooks with the same ``max|c|`` have the same candidate scales, so ``y = 2w/s`` and its cell
    index are computed once per group (on a table over the group's code range) and only the lookup,
    ``d = q·s − w`` and ``(d H_j)·d`` once per codebook. Work items are (block, row) pairs × grid,
    chunked below ``CHUNK_BYTES``; a chunk's blocks and grid factors go through one batched GEMM, one
    batch entry per factor, so a row with the same ``ŵ`` at two factors gets bit-identical errors
    and the tie goes to the first factor (folding the factors into one GEMM's rows does not ensure that)."""
    C, N, nb = s0.shape
    width, F, dev = Wp.shape[-1], len(factors), Wp.device
    Wk, Hk = Wp.to(work).transpose(0, 1).contiguous(), Hp.to(work)      # [nb, N, width]
    W2 = 2 * Wk                                                          # exact
    groups: dict[float, list[int]] = {}
    for i, c in enumerate(books):
        groups.setdefault(float(cmax_of(c)), []).append(i)
    tabs = []
    for members in groups.values():
        lo, hi = min(int(books[i][0]) for i in members), max(int(books[i][-1]) for i in members)
        wide = any(not _lut_ok(books[i]) for i in members)
        tabs.append((members, 2 * lo - 1, 2 * hi, None if wide else [_nearest_lut(books[i], lo, hi).to(dev, work) for i in members]))
    unit = F * width * torch.finfo(work).bits // 8 * 12                   # bytes of one (row, block) evaluation
    cap = max(1, CHUNK_BYTES.get(dev.type, CHUNK_BYTES["cpu"]) // unit)
    rows = min(N, cap)
    nbc = max(1, min(nb, cap // rows))
    best = torch.empty(C, N, nb, dtype=torch.long, device=dev)
    f = factors.to(dev)[None, :, None]
    for b0 in range(0, nb, nbc):
        h = Hk[b0:b0 + nbc]
        for r0 in range(0, N, rows):
            w, w2 = Wk[b0:b0 + nbc, None, r0:r0 + rows], W2[b0:b0 + nbc, None, r0:r0 + rows]   # [b, 1, r, width]
            b, r = w.shape[0], w.shape[2]
            for members, tmin, tmax, luts in tabs:
                cand = (f * s0[members[0], r0:r0 + rows, b0:b0 + nbc].T[:, None, :]).to(work)[..., None]  # [b, F, r, 1]
                y = w2 / torch.where(cand > 0, cand, 1)                 # = 2·(w/s); w = 0 where s = 0
                if luts is None:                                         # wide code range: binary search
                    for i in members:
                        x = (y / 2).clamp_(float(books[i][0]), float(books[i][-1]))
                        d = _nearest_sorted(x, books[i]).mul_(cand).sub_(w)
                        err = torch.matmul(d, h[:, None]).mul_(d).sum(-1)
                        best[i, r0:r0 + rows, b0:b0 + nbc] = err.argmin(1).T
                    continue
                t = torch.floor(y).clamp_(tmin, tmax)
                tie = t == y
                idx = t.sub_(tmin).mul_(2).add_(tie).long()              # 2(t − t_min) + [y == t]
                for i, lut in zip(members, luts):
                    d = lut[idx].mul_(cand).sub_(w)                      # ŵ − w  [b, F, r, width]
                    err = torch.matmul(d, h[:, None]).mul_(d).sum(-1)          # one GEMM per factor: exact ties stay ties
                    best[i, r0:r0 + rows, b0:b0 + nbc] = err.argmin(1).T
    return best


def cmax_of(c: torch.Tensor) -> torch.Tensor:
    """``max|c|`` clamped to ≥ 1: the code magnitude that ``max|w|`` maps to at grid factor 1."""
    return c.abs().max().clamp_min(1)


def _block_errors(Wp: torch.Tensor, Hp: torch.Tensor, books: list, s: torch.Tensor) -> torch.Tensor:
    """Float64 ``Δw_r H_j Δw_rᵀ`` per codebook, row and block for the scales ``s`` [C, N, nb]."""
    C, N, nb = s.shape
    width = Wp.shape[-1]
    out = torch.empty(C, N, nb, dtype=torch.float64, device=Wp.device)
    step = max(1, CHUNK_BYTES.get(Wp.device.type, CHUNK_BYTES["cpu"]) // (nb * width * 8 * 8))
    for i, c in enumerate(books):
        lut = _lut_or_none(c, Wp.device, torch.float64)
        for r0 in range(0, N, step):
            w = Wp[r0:r0 + step]                                         # [r, nb, width]
            d = (_quantize(w, s[i, r0:r0 + step, :, None], c, lut)[1] - w).transpose(0, 1)
            out[i, r0:r0 + step] = (torch.bmm(d, Hp) * d).sum(-1).T
    return out


#: Widest column block the fused kernel takes (a block of H is held on chip per program).
TRITON_MAX_WIDTH = 128
#: Kernel configuration (rows per program, warps, dot precision); picked by measurement on an H100.
TRITON_CONFIG = {"block_r": 16, "num_warps": 4, "precision": "ieee",
                 "float64_eval": "triton", "eval_block_r": 32, "eval_num_warps": 8}


def _lut_pack(books: list, dtype: torch.dtype, device) -> tuple[torch.Tensor, ...]:
    """All codebooks' :func:`_nearest_lut` tables in one buffer: (tables, offsets, t_min, t_max)."""
    luts = [_nearest_lut(c).to(dtype) for c in books]
    off = torch.tensor([0] + [len(t) for t in luts[:-1]]).cumsum(0).to(device, torch.int32)
    tmin = torch.tensor([2 * int(c[0]) - 1 for c in books], dtype=dtype, device=device)
    tmax = torch.tensor([2 * int(c[-1]) for c in books], dtype=dtype, device=device)
    return torch.cat(luts).to(device), off, tmin, tmax


def _best_triton(W: torch.Tensor, H: torch.Tensor, s0: torch.Tensor, books: list, factors: torch.Tensor,
                 width: int, **config) -> torch.Tensor:
    """:func:`_best_torch` (float32 search) as one fused launch over (row tile, block, codebook)."""
    cfg = TRITON_CONFIG | config
    N, K = W.shape
    C, _, nb = s0.shape
    lut, off, tmin, tmax = _lut_pack(books, torch.float32, W.device)
    best = torch.empty(C, N, nb, dtype=torch.int32, device=W.device)
    br, bk = cfg["block_r"], max(16, triton.next_power_of_2(width))
    _grid_kernel[(triton.cdiv(N, br), nb, C)](
        W.to(torch.float32).contiguous(), H.to(torch.float32).contiguous(), s0.contiguous(), factors.contiguous(),
        lut, off, tmin, tmax, best, N, K, nb, width, len(factors),
        BLOCK_R=br, BLOCK_K=bk, PREC=cfg["precision"], num_warps=cfg["num_warps"])
    return best.long()


def _block_errors_triton(W: torch.Tensor, H: torch.Tensor, books: list, s: torch.Tensor, width: int,
                         **config) -> torch.Tensor:
    """:func:`_block_errors` (float64 throughout) as one fused launch."""
    cfg = TRITON_CONFIG | config
    N, K = W.shape
    C, _, nb = s.shape
    lut, off, tmin, tmax = _lut_pack(books, torch.float64, W.device)
    out = torch.empty(C, N, nb, dtype=torch.float64, device=W.device)
    br, bk = cfg["eval_block_r"], max(16, triton.next_power_of_2(width))
    _eval_kernel[(triton.cdiv(N, br), nb, C)](
        W.to(torch.float64).contiguous(), H.to(torch.float64).contiguous(), s.contiguous(), lut, off, tmin, tmax, out,
        N, K, nb, width, BLOCK_R=br, BLOCK_K=bk, num_warps=cfg["eval_num_warps"])
    return out


if triton is not None:
    @triton.jit
    def _tile(w_ptr, h_ptr, N, K, WIDTH, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
        """This program's rows [BLOCK_R] (program_id 0) of column block j (program_id 1): row ids,
        row and column masks, the W tile [BLOCK_R, BLOCK_K] and the diagonal H block (zero-padded)."""
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        kk = tl.arange(0, BLOCK_K)
        cols = tl.program_id(1) * WIDTH + kk
        rm = rows < N
        cm = (kk < WIDTH) & (cols < K)
        w = tl.load(w_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], mask=rm[:, None] & cm[None, :], other=0.0)
        h = tl.load(h_ptr + cols[:, None].to(tl.int64) * K + cols[None, :], mask=cm[:, None] & cm[None, :], other=0.0)
        return rows, rm, cm, w, h

    @triton.jit
    def _eval_kernel(w_ptr, h_ptr, s_ptr, lut_ptr, off_ptr, tmin_ptr, tmax_ptr, out_ptr, N, K, NB, WIDTH,
                     BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
        """Float64 e = Σ_k (d H_j)_k d_k, d = s·LUT[cell(2w/s)] − w, for the given scales (as _quantize)."""
        rows, rm, cm, w, h = _tile(w_ptr, h_ptr, N, K, WIDTH, BLOCK_R, BLOCK_K)
        j, c = tl.program_id(1), tl.program_id(2)
        o = (c * N + rows).to(tl.int64) * NB + j
        s = tl.load(s_ptr + o, mask=rm, other=0.0)
        tmin = tl.load(tmin_ptr + c)
        y = (w * 2.0) / tl.where(s > 0, s, 1.0)[:, None]                  # float64 '/' is div.rn.f64
        t = tl.minimum(tl.maximum(tl.floor(y), tmin), tl.load(tmax_ptr + c))
        q = tl.load(lut_ptr + tl.load(off_ptr + c) + ((t - tmin) * 2.0 + (y == t).to(tl.float64)).to(tl.int32))
        d = tl.where(cm[None, :], q * s[:, None] - w, 0.0)
        tl.store(out_ptr + o, tl.sum(tl.dot(d, h) * d, axis=1), mask=rm)

    @triton.jit
    def _lookup(w2, s, lut_ptr, tmin, tmax):
        """Codes LUT[cell(y)], y = 2w/s (correctly rounded, as torch), for per-row scales ``s`` (float32)."""
        y = tl.div_rn(w2, tl.where(s > 0, s, 1.0)[:, None])
        t = tl.minimum(tl.maximum(tl.floor(y), tmin), tmax)
        return tl.load(lut_ptr + ((t - tmin) * 2.0 + (y == t).to(tl.float32)).to(tl.int32))

    @triton.jit
    def _grid_kernel(w_ptr, h_ptr, s0_ptr, f_ptr, lut_ptr, off_ptr, tmin_ptr, tmax_ptr, best_ptr,
                     N, K, NB, WIDTH, NF,
                     BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr):
        """One program: rows [BLOCK_R] of block j (program_id 1) for codebook c (program_id 2);
        per grid factor: s = f·s0 (float64 → float32), q = LUT[cell(2w/s)], d = q·s − w,
        e = Σ_k (d H_j)_k d_k, running first argmin over the factors. The table lookup of the next
        factor is issued before this factor's dot, so its latency hides behind the FMAs. Padded
        columns have H = 0 (and finite d), so they add exact zeros."""
        rows, rm, cm, w, h = _tile(w_ptr, h_ptr, N, K, WIDTH, BLOCK_R, BLOCK_K)
        j, c = tl.program_id(1), tl.program_id(2)
        w2 = w * 2.0
        s0 = tl.load(s0_ptr + (c * N + rows).to(tl.int64) * NB + j, mask=rm, other=0.0)
        lut = lut_ptr + tl.load(off_ptr + c)
        tmin = tl.load(tmin_ptr + c)
        tmax = tl.load(tmax_ptr + c)
        best_e = tl.full([BLOCK_R], float("inf"), tl.float32)
        best_i = tl.zeros([BLOCK_R], tl.int32)
        s = (tl.load(f_ptr) * s0).to(tl.float32)
        q = _lookup(w2, s, lut, tmin, tmax)
        for f in range(NF):
            s_next = (tl.load(f_ptr + tl.minimum(f + 1, NF - 1)) * s0).to(tl.float32)
            q_next = _lookup(w2, s_next, lut, tmin, tmax)
            d = q * s[:, None] - w
            e = tl.sum(tl.dot(d, h, input_precision=PREC) * d, axis=1)
            better = e < best_e
            best_e = tl.where(better, e, best_e)
            best_i = tl.where(better, f, best_i)
            s, q = s_next, q_next
        tl.store(best_ptr + (c * N + rows).to(tl.int64) * NB + j, best_i, mask=rm)


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
