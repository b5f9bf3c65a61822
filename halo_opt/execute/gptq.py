"""GPTQ restricted to per-tile codebooks (Frantar et al. 2022, gptq.py, with codebooks).

Columns k = 0..K-1 are quantized in order; each column's error is fed back to the columns
not yet quantized through the upper Cholesky factor U of H⁻¹ (``H⁻¹ = Uᵀ U``):

    q_k = Q_{c(r,k)}(w_k / s_{r,b(k)}),   e_k = (w_k − s·q_k) / U_kk,   w_{k'} −= e_k U_{k k'}  (k' > k)

with lazy batch updates (columns processed in chunks of ``blocksize``; the rest of W is
updated once per chunk). The tile of (row r, column k) decides the codebook ``c`` and the scale
``s``; a tile's scales are chosen by the cost stage's scale search on the *updated* weights when the sweep
enters the tile's column block (GPTQ's non-static groups). Chunks never straddle column blocks.

Lower layer error does not imply better model accuracy (llm-compressor's LUT experiment:
perplexity 17.76 vs 13.32 for RTN); the evaluator decides, the report shows both.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .apply import QuantLayer, ScaleSearch, TileGrid


def quantize_gptq(name: str, W: torch.Tensor, H: torch.Tensor, grid: TileGrid, tile_codebook: list[str],
                  codes: dict[str, torch.Tensor], blocksize: int = 128, dtype: torch.dtype | None = None,
                  scales: ScaleSearch = ScaleSearch()) -> QuantLayer:
    """GPTQ-quantize one layer per plan.

    ``W`` [N, K]; ``H`` [K, K] *damped* Hessian (must be positive definite); ``tile_codebook[g]``
    the plan's codebook name for global tile g; ``codes`` name -> code tensor. ``dtype``: working
    precision (default float64 on CPU, float32 on CUDA, as GPTQ).
    """
    from ..quantize import quantize_to_codes

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
    S = torch.empty(N, len(grid.col_edges) - 1, dtype=torch.float64, device=dev)
    for j, (c0, c1) in enumerate(zip(grid.col_edges, grid.col_edges[1:])):
        s = torch.empty(N, dtype=dtype, device=dev)
        rows_of: dict[str, list[torch.Tensor]] = {}
        for i, (r0, r1) in enumerate(zip(grid.row_edges, grid.row_edges[1:])):
            rows_of.setdefault(tile_codebook[grid.tile[i, j]], []).append(torch.arange(r0, r1, device=dev))
        groups = [(torch.cat(ix), codes[cb].to(dev, dtype)) for cb, ix in rows_of.items()]
        for ix, c in groups:  # a row's scale depends only on that row: one search per (block, codebook), as RTN
            s[ix] = scales(W[ix, c0:c1], H[c0:c1, c0:c1], c).to(dtype).reshape(-1)
        S[:, j] = s.double()
        for i1 in range(c0, c1, blocksize):
            i2 = min(i1 + blocksize, c1)
            W1 = W[:, i1:i2].clone()
            Q1 = torch.empty(N, i2 - i1, dtype=dtype, device=dev)
            E1 = torch.empty_like(Q1)
            U1 = U[i1:i2, i1:i2]
            for i in range(i2 - i1):
                w = W1[:, i]
                qv = torch.empty_like(w)
                for ix, c in groups:
                    qv[ix] = quantize_to_codes(w[ix, None], s[ix, None], c)[0][:, 0].to(dtype)
                err = (w - qv * s) / U1[i, i]
                W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
                Q1[:, i] = qv
                E1[:, i] = err
            q[:, i1:i2] = Q1.round().to(torch.int16)
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return QuantLayer(name, q, S, grid)
