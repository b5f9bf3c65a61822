"""GPTQ restricted to per-tile codebooks (Frantar et al. 2022, gptq.py, with codebooks).

Columns k = 0..K-1 are quantized in order; each column's error is fed back to the columns
not yet quantized through the upper Cholesky factor U of H⁻¹ (``H⁻¹ = Uᵀ U``):

    q_k = Q_{c(r,k)}(w_k / s_{r,b(k)}),   e_k = (w_k − s·q_k) / U_kk,   w_{k'} −= e_k U_{k k'}  (k' > k)

with lazy batch updates (columns processed in chunks of ``blocksize``; the rest of W is
updated once per chunk). The tile of (row r, column k) decides the codebook ``c`` and the scale
``s``; a tile's scales are chosen by the cost stage's scale search on the *updated* weights when the sweep
enters the tile's column block (GPTQ's non-static groups). Chunks never straddle column blocks.

Floating-point codebooks: ``q`` is the nearest *value* (:func:`~halo_opt.quantize.quantize_to_grid`),
the code its bit pattern. An ``"mx"`` tile's E8M0 scale of each 32-column group is fixed when the
sweep enters the group, from the updated weights of its columns (the tile's scale rule,
:func:`~halo_opt.quantize.mx_block_scales`); chunks are then cut at multiples of 32 columns so a
group never straddles two chunks.

Lower layer error does not imply better model accuracy (llm-compressor's LUT experiment:
perplexity 17.76 vs 13.32 for RTN); the evaluator decides, the report shows both.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..quantize import MX_BLOCK, Grid
from .apply import QuantLayer, ScaleSearch, TileGrid, is_mx, scale_layout


def quantize_gptq(name: str, W: torch.Tensor, H: torch.Tensor, grid: TileGrid, tile_codebook: list[str],
                  codes: dict[str, torch.Tensor], blocksize: int = 128, dtype: torch.dtype | None = None,
                  scales: ScaleSearch = ScaleSearch()) -> QuantLayer:
    """GPTQ-quantize one layer per plan.

    ``W`` [N, K]; ``H`` [K, K] *damped* Hessian (must be positive definite); ``tile_codebook[g]``
    the plan's codebook name for global tile g; ``codes`` name -> code tensor. ``dtype``: working
    precision (default float64 on CPU, float32 on CUDA, as GPTQ).
    """
    from ..quantize import quantize_to_codes, quantize_to_grid

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
        step = max(MX_BLOCK, blocksize // MX_BLOCK * MX_BLOCK) if mx else blocksize
        for i1 in range(c0, c1, step):
            i2 = min(i1 + step, c1)
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
