"""GPTQ restricted to per-tile codebooks (Frantar et al. 2022, gptq.py, with codebooks).

Columns k = 0..K-1 are quantized in order; each column's error is fed back to the columns
not yet quantized through the upper Cholesky factor U of H⁻¹ (``H⁻¹ = Uᵀ U``):

    q_k = Q_{c(r,k)}(w_k / s_{r,b(k)}),   e_k = (w_k − s·q_k) / U_kk,   w_{k'} −= e_k U_{k k'}  (k' > k)

with lazy batch updates (columns processed in chunks of ``blocksize``; the rest of W is
updated once per chunk). The tile of (row r, column k) decides the codebook ``c`` and the scale
``s``; a tile's scales are chosen by the cost stage's scale search on the *updated* weights when the sweep
enters the tile's column block (GPTQ's non-static groups). Chunks never straddle column blocks.

One column, all rows at once: when the sweep enters a column block, every codebook's nearest-code
table (:func:`~halo_opt.quantize._nearest_lut`, over half-integer cells of ``y = 2w/s``) goes into
one flat table, each row pointing at its tile's part (offset, cell range); ``Q_c`` of a column is
then a few elementwise operations and one gather for every row, whatever the mix of codebooks
(the same decisions as :func:`~halo_opt.quantize.quantize_to_codes`, bit for bit).

Floating-point codebooks: ``q`` is the nearest *value* (:func:`~halo_opt.quantize.quantize_to_grid`),
the code its bit pattern; a row-scaled FP codebook goes through the same table (on its integer
representatives, with the scale ``s·2^−shift``). An ``"mx"`` tile's E8M0 scale of each 32-column
group is fixed when the sweep enters the group, from the updated weights of its columns (the
tile's scale rule, :func:`~halo_opt.quantize.mx_block_scales`); chunks are then cut at multiples
of 32 columns so a group never straddles two chunks. Column blocks holding an ``"mx"`` tile or an
FP codebook too wide for a table (FP8 E5M2) quantize each codebook's rows separately per column.

Lower layer error does not imply better model accuracy (llm-compressor's LUT experiment:
perplexity 17.76 vs 13.32 for RTN); the evaluator decides, the report shows both.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..quantize import MX_BLOCK, Grid, _lut_ok, _nearest_lut, codes_tensor, quantize_to_codes, quantize_to_grid
from .apply import QuantLayer, ScaleSearch, TileGrid, is_mx, scale_layout


def quantize_gptq(name: str, W: torch.Tensor, H: torch.Tensor, grid: TileGrid, tile_codebook: list[str],
                  codes: dict[str, torch.Tensor], blocksize: int = 128, dtype: torch.dtype | None = None,
                  scales: ScaleSearch = ScaleSearch(), lookup: bool = True) -> QuantLayer:
    """GPTQ-quantize one layer per plan.

    ``W`` [N, K]; ``H`` [K, K] *damped* Hessian (must be positive definite); ``tile_codebook[g]``
    the plan's codebook name for global tile g; ``codes`` name -> code tensor. ``dtype``: working
    precision (default float64 on CPU, float32 on CUDA, as GPTQ). ``lookup=False`` sends every column
    block through the per-group path (the same result, bit for bit; the reference the tests and
    ``benchmarks/bench_gptq.py --old`` hold the one-lookup sweep against).
    """
    dev = W.device
    dtype = dtype or (torch.float32 if dev.type == "cuda" else torch.float64)
    W = W.to(dtype).clone()
    H = H.to(dev, dtype).clone()
    N, K = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    try:
        L = torch.linalg.cholesky(H)
        # H⁻¹ via cholesky_solve: cholesky_inverse (LAPACK potri) can be 50x slower under OpenMP contention
        U = torch.linalg.cholesky(torch.cholesky_solve(torch.eye(K, dtype=dtype, device=dev), L), upper=True)
    except torch.linalg.LinAlgError:
        raise UserError(f"Hessian of layer '{name}' is not positive definite after damping; "
                        "recalibrate with more tokens or a larger damping (--damp)") from None
    q = torch.empty(N, K, dtype=torch.int16, device=dev)
    edges, sgroups = scale_layout(grid, tile_codebook, codes)
    fp = any(isinstance(codes[tile_codebook[t]], Grid) for t in grid.tile.ravel())
    V = torch.empty(N, K, dtype=torch.float32, device=dev) if fp else None
    S = torch.empty(N, len(grid.col_edges) - 1 if edges is None else len(edges) - 1, dtype=torch.float64, device=dev)
    books = {cb: _book(codes[cb], dtype) for cb in {tile_codebook[t] for t in grid.tile.ravel()}}
    for j, (c0, c1) in enumerate(zip(grid.col_edges, grid.col_edges[1:])):
        s = torch.empty(N, dtype=dtype, device=dev)
        rows_of: dict[str, list[torch.Tensor]] = {}
        for i, (r0, r1) in enumerate(zip(grid.row_edges, grid.row_edges[1:])):
            rows_of.setdefault(tile_codebook[grid.tile[i, j]], []).append(torch.arange(r0, r1, device=dev))
        groups = [(torch.cat(ix), codes[cb].to(dev, dtype)) for cb, ix in rows_of.items()]
        for ix, c in groups:  # a row's scale depends only on that row: one search per (block, codebook), as RTN
            if not is_mx(c):  # mx tiles: scales fixed per 32-column group below
                s[ix] = scales(W[ix, c0:c1], H[c0:c1, c0:c1], c).to(dtype).reshape(-1)
        mx = [(ix, c) for ix, c in groups if is_mx(c)]
        S[:, sgroups[j][0]:sgroups[j][-1] + 1] = s.double()[:, None]
        tabs = [books[cb] for cb in rows_of]
        table = _row_table([ix for ix, _ in groups], tabs, s, fp) if lookup and None not in tabs else None
        step = max(MX_BLOCK, blocksize // MX_BLOCK * MX_BLOCK) if mx else blocksize
        for i1 in range(c0, c1, step):
            i2 = min(i1 + step, c1)
            if table is not None:
                Q1, C1, E1 = _sweep(W[:, i1:i2], U[i1:i2, i1:i2], s, table)
            else:   # one codebook group at a time ("mx" tiles, FP codebooks too wide for a table)
                W1 = W[:, i1:i2].clone()
                Q1 = torch.empty(N, i2 - i1, dtype=dtype, device=dev)
                C1 = torch.empty(N, i2 - i1, dtype=torch.int64, device=dev) if fp else None
                E1 = torch.empty_like(Q1)
                U1 = U[i1:i2, i1:i2]
                for i in range(i2 - i1):
                    col = i1 + i
                    if mx and (col - c0) % MX_BLOCK == 0:                    # entering a 32-column scale group
                        b = min(MX_BLOCK, c1 - col)
                        for ix, c in mx:
                            sb = scales.block(W1[ix, i:i + b], H[col:col + b, col:col + b], c)[:, 0]
                            s[ix] = sb.to(dtype)
                            S[ix, sgroups[j][0] + (col - c0) // MX_BLOCK] = sb.double()
                    w = W1[:, i]
                    qv = torch.empty_like(w)
                    for ix, c in groups:
                        if isinstance(c, Grid):
                            cq, vq, _ = quantize_to_grid(w[ix, None], s[ix, None], c)
                            qv[ix], C1[ix, i] = vq[:, 0].to(dtype), cq[:, 0]
                        else:
                            qv[ix] = quantize_to_codes(w[ix, None], s[ix, None], c)[0][:, 0].to(dtype)
                            if C1 is not None:
                                C1[ix, i] = qv[ix].round().long()
                    err = (w - qv * s) / U1[i, i]
                    W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
                    Q1[:, i] = qv
                    E1[:, i] = err
            if fp:
                q[:, i1:i2] = C1.to(torch.int16)
                V[:, i1:i2] = Q1.to(torch.float32)
            else:
                q[:, i1:i2] = Q1.round().to(torch.int16)
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return QuantLayer(name, q, S, grid, V, edges)


def _book(c, dtype: torch.dtype):
    """Codebook ``c``'s nearest-code table: ``(t_min, t_max, shift, values, codes)`` (CPU), or None for
    an ``"mx"`` codebook or one too wide for a table. Entry ``2(t − t_min) + [y ∉ ℤ]`` is the code of
    ``y = 2x`` in cell ``t = floor(y)`` (:func:`~halo_opt.quantize._nearest_lut`'s (open cell, edge)
    pairs swapped); values in ``dtype`` as the quantizers return them, codes the FP bit patterns."""
    g = c if isinstance(c, Grid) else None
    rep = g.rep if g else codes_tensor(c)                       # sorted, distinct integers (as the quantizers)
    if g and (is_mx(g) or not _lut_ok(rep)):
        return None
    q = _nearest_lut(rep).view(-1, 2).flip(1).reshape(-1).to(dtype)
    v = torch.ldexp(q.double(), torch.tensor(-g.shift)) if g else q
    return 2 * int(rep[0]) - 1, 2 * int(rep[-1]), g.shift if g else 0, v.to(dtype), g.code_of(v) if g else q.long()


def _row_table(rows: list, books: list, s: torch.Tensor, fp: bool):
    """One column block's lookup for every row at once (codebook ``books[i]`` on ``rows[i]``), or None.

    Row r: ``y = clamp(2·w/s', t_min, t_max)`` (``s' = s·2^−shift``; a zero scale pins ``y`` to the
    cell of 0, as ``quantize_to_codes``'s ``y = 0``) and ``k = floor(y) + ceil(y) + base_r``, an entry of
    :func:`_book`'s table at offset ``base_r + 2 t_min`` in the flat table. Clamping ``y`` rather than
    ``t`` (as ``quantize_to_codes`` does) picks the same code: outside the range both entries of a
    cell are ``c_min`` or ``c_max``. Returns ``(s', lo, hi, base, values, codes)``: per-row [N], the
    flat tables (codes only for layers with FP tiles)."""
    N, dtype, dev = len(s), s.dtype, s.device
    sd, lo, hi, base = (torch.empty(N, dtype=dtype, device=dev) for _ in range(4))
    n = big = 0
    for ix, (tmin, tmax, shift, v, _) in zip(rows, books):
        sr = torch.ldexp(s[ix], torch.tensor(-shift, device=dev)) if shift else s[ix]
        pos, t0 = sr > 0, min(max(0, tmin), tmax)
        sd[ix] = torch.where(pos, sr, torch.ones_like(sr))
        lo[ix] = torch.where(pos, tmin, t0).to(dtype)
        hi[ix] = torch.where(pos, tmax, t0).to(dtype)
        base[ix] = float(n - 2 * tmin)
        n, big = n + len(v), max(big, abs(tmin), abs(tmax))
    if n + 4 * big >= 1 / torch.finfo(dtype).eps:                  # every k must be an exact float
        return None
    return sd, lo, hi, base, torch.cat([b[3] for b in books]).to(dev), torch.cat([b[4] for b in books]).to(dev) if fp else None


def _sweep(W1: torch.Tensor, U1: torch.Tensor, s: torch.Tensor, table: tuple) -> tuple:
    """One chunk of columns, each column for all rows by :func:`_row_table`'s lookup: ``(Q1, C1, E1)``
    [N, b] (values, codes or None, errors). Works on ``W1ᵀ`` (a column is a contiguous row); the
    arithmetic is the general loop's, operation for operation."""
    sd, lo, hi, base, vals, cods = table
    W1 = W1.T.contiguous()
    Q1, E1 = torch.empty_like(W1), torch.empty_like(W1)
    C1 = None if cods is None else torch.empty(W1.shape, dtype=torch.int64, device=W1.device)
    for i, (w, qv, e) in enumerate(zip(W1, Q1, E1)):
        y = torch.div(w, sd).mul_(2).clamp_(lo, hi)
        k = y.floor().add_(y.ceil()).add_(base).long()
        torch.take(vals, k, out=qv)
        if C1 is not None:
            torch.take(cods, k, out=C1[i])
        torch.div(w - qv * s, U1[i, i], out=e)
        W1[i + 1:].sub_(torch.outer(U1[i, i + 1:], e))
    return Q1.T, None if C1 is None else C1.T, E1.T.contiguous()
