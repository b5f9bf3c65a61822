"""Quantize a layer per plan: each tile to its codebook, one scale per output row and tile.

A layer's tiles must form a grid: row blocks × column blocks (``row_edges``, ``col_edges``).
A quantized layer keeps integer codes ``q`` [N, K] and float64 scales ``s`` [N, B] (B column
blocks); the weight the model runs is ``Ŵ[r, k] = float32(q[r, k]) · float32(s[r, b(k)])``
(exactly what compressed-tensors' dequantize computes, so the export reloads bit-identically).

RTN: per tile g, ``s = search_scales(W_g, H_{K_g K_g}, codes)`` (the cost stage's grid) and ``q = round-to-nearest-code(W_g / s)``
(both from :mod:`halo_opt.quantize`, the same functions the cost stage used for ``e_gc``).

Floating-point codebooks (a :class:`~halo_opt.quantize.Grid` with an FP ``format``): ``q`` holds the
code (bit pattern) and ``values`` [N, K] (float32, exact) the value it stands for, so
``Ŵ = values · s``. An ``"mx"`` codebook has one E8M0 scale per row and 32 columns
(:func:`~halo_opt.quantize.mx_block_scales`); a layer holding one then keeps its scales per
*scale group* (``scale_edges``: every tile column block cut into 32-column groups), a row-scaled
tile repeating its scale over its groups. Integer-only layers are as before (``values`` and
``scale_edges`` None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..errors import require
from ..quantize import MX_BLOCK, Grid, grid_of


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one layer as a grid; ``tile[i, j]`` = global tile id of row block i, column block j."""

    layer: str
    row_edges: tuple[int, ...]
    col_edges: tuple[int, ...]
    tile: np.ndarray  # [n_row_blocks, n_col_blocks] int

    @staticmethod
    def from_tiles(layer: str, tiles: pd.DataFrame, shape: tuple[int, int]) -> "TileGrid":
        """Build from the layer's rows of ``tiles.parquet``; UserError unless they tile [0,N)×[0,K) as a grid."""
        N, K = shape
        re = tuple(sorted(set(tiles["row0"]) | {N}))
        ce = tuple(sorted(set(tiles["col0"]) | {K}))
        ok = re[0] == 0 and ce[0] == 0 and len(tiles) == (len(re) - 1) * (len(ce) - 1)
        grid = np.full((len(re) - 1, len(ce) - 1), -1, dtype=np.int64)
        ri = {r: i for i, r in enumerate(re)}
        ci = {c: j for j, c in enumerate(ce)}
        for t, r0, r1, c0, c1 in tiles[["tile", "row0", "row1", "col0", "col1"]].itertuples(index=False):
            i, j = ri.get(r0), ci.get(c0)
            ok = ok and ri.get(r1) == i + 1 and ci.get(c1) == j + 1 and grid[i, j] < 0
            if ok:
                grid[i, j] = t
        require(ok and (grid >= 0).all(), f"tiles of layer '{layer}' do not form a grid over its {N}x{K} weight; "
                "the cost folder is for another model shape, regenerate it")
        return TileGrid(layer, re, ce, grid)

    def widths(self) -> torch.Tensor:
        return torch.tensor(np.diff(self.col_edges))


@dataclass
class QuantLayer:
    """Integer codes + scales of one planned layer (see module docstring)."""

    name: str
    q: torch.Tensor  # int16 [N, K] codes
    scales: torch.Tensor  # float64 [N, B], per output row and column block (tile), or per scale group
    grid: TileGrid
    values: torch.Tensor | None = None  # float32 [N, K] values of FP codes (None: code = value)
    scale_edges: tuple[int, ...] | None = None  # column edges of the scale groups (None: the tiles')

    def scale_widths(self) -> torch.Tensor:
        return self.grid.widths() if self.scale_edges is None else torch.tensor(np.diff(self.scale_edges))

    def expanded_scales(self, dtype=torch.float64) -> torch.Tensor:
        return self.scales.to(dtype).repeat_interleave(self.scale_widths().to(self.scales.device), dim=1)

    def code_values(self, dtype=torch.float32) -> torch.Tensor:
        """The value each code stands for (= the code for integer tiles)."""
        return (self.q if self.values is None else self.values).to(dtype)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        """The weight the model runs: ``float32(value(q)) · float32(s)`` (then cast to ``dtype``)."""
        return (self.code_values(torch.float32) * self.expanded_scales(torch.float32)).to(dtype)

    def exact(self) -> torch.Tensor:
        """``value(q) · s`` in float64: the quantizer's ideal output (what ``e_gc`` is computed on)."""
        return self.code_values(torch.float64) * self.expanded_scales(torch.float64)


@dataclass(frozen=True)
class ScaleSearch:
    """Per-row scale search as the cost stage ran it (grid ``factors``, ``fast`` float32 search):
    ``s = argmin_{f·max|w|/max|c|} Δw H Δwᵀ`` (:func:`halo_opt.quantize.search_scales`)."""

    factors: tuple[float, ...] | None = None
    fast: bool = False
    mx_rule: str = "search"  # E8M0 block scales of "mx" codebooks (halo_opt.quantize.mx_block_scales)

    @staticmethod
    def from_meta(meta: dict) -> "ScaleSearch":
        f = meta.get("scale_grid")
        return ScaleSearch(tuple(float(x) for x in f) if f else None, bool(meta.get("fast_search", False)),
                           str((meta.get("fp_scales") or {}).get("mx_rule", "search")))

    def block(self, W: torch.Tensor, H: torch.Tensor, grid) -> torch.Tensor:
        """E8M0 scales [R, ⌈K/32⌉] of an ``"mx"`` codebook for the tile ``W`` [R, K]."""
        from ..quantize import mx_block_scales

        return mx_block_scales(W, H, grid, self.mx_rule)

    def __call__(self, W: torch.Tensor, H: torch.Tensor, codes) -> torch.Tensor:
        from ..quantize import search_scales

        f = torch.tensor(self.factors, dtype=torch.float64) if self.factors else None
        return search_scales(W, H, codes, f, self.fast, errors=False)[0]


def tile_codes(codebooks: dict[str, list[int]], device=None, specs: dict[str, dict] | None = None) -> dict:
    """Codebook name -> sorted float64 code tensor, or a :class:`~halo_opt.quantize.Grid` for a
    codebook that ``specs`` (the cost folder's entries) gives a floating-point ``format``."""
    out = {}
    for k, v in codebooks.items():
        spec = (specs or {}).get(k) or {}
        g = grid_of({"codes": v, "format": spec.get("format"), "scale": spec.get("scale")}) if spec.get("format") else None
        out[k] = g if g is not None and not g.is_int else torch.tensor(sorted(v), dtype=torch.float64, device=device)
    return out


def is_mx(c) -> bool:
    return isinstance(c, Grid) and c.scale == "mx"


def scale_layout(grid: TileGrid, tile_codebook: list[str], codes: dict) -> tuple[tuple[int, ...] | None, list[list[int]]]:
    """``(scale_edges, groups)``: column edges of the scale groups (None when no tile of the layer is
    ``"mx"``: one scale per tile) and, per tile column block j, the indices of its scale groups."""
    mx_cols = [any(is_mx(codes[tile_codebook[grid.tile[i, j]]]) for i in range(grid.tile.shape[0]))
               for j in range(grid.tile.shape[1])]
    if not any(mx_cols):
        return None, [[j] for j in range(grid.tile.shape[1])]
    edges, groups = [0], []
    for j, (c0, c1) in enumerate(zip(grid.col_edges, grid.col_edges[1:])):
        cuts = list(range(c0 + MX_BLOCK, c1, MX_BLOCK)) if mx_cols[j] else []
        groups.append(list(range(len(edges) - 1, len(edges) + len(cuts))))
        edges += cuts + [c1]
    return tuple(edges), groups


def add_damping(H: torch.Tensor, damp: float) -> torch.Tensor:
    """``H + damp·I`` (damp absolute, as recorded in the cost table)."""
    return H + damp * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)


class ScaleMemo:
    """Row scales already searched, kept across the plans run on one model (the demo, the closed
    loop): per (layer, column block, codebook, damping, search) a float64 [N] of scales and a mask
    of the rows searched. A row's scale depends only on that row and the block's H, so a later plan
    searches just the rows no earlier plan put on that codebook in that block (bitwise the same
    scales: ``tests/test_exec_core.py``)."""

    def __init__(self):
        self._d: dict = {}

    def rows(self, key: tuple, idx: torch.Tensor, n: int, search) -> torch.Tensor:
        """Scales of rows ``idx`` (of ``n``); ``search(rows)`` computes those not seen yet."""
        s, seen = self._d.get(key) or self._d.setdefault(
            key, (torch.empty(n, dtype=torch.float64, device=idx.device), torch.zeros(n, dtype=torch.bool, device=idx.device)))
        need = idx[~seen[idx]]
        if len(need):
            s[need] = search(need)
            seen[need] = True
        return s[idx]

    def seed(self, name: str, grid: "TileGrid", books: list[tuple[int, object]], load, damp: float,
             scales: "ScaleSearch", device: torch.device | str = "cpu") -> None:
        """Take the cost stage's chosen scales of layer ``name`` as searched, for ``books`` ((index in
        the saved scales, codes) per codebook); ``load()`` gives them, float64 [C, N, n_col_blocks],
        and is called only when some are not here yet. ``damp`` and ``scales`` must be those the cost
        stage used (the cost folder's): then they are the scales a search here would find, bit for
        bit (``tests/test_exec_fp.py``). ``mx`` codebooks (E8M0 block scales, NaN there) are left out."""
        blocks = list(zip(grid.col_edges, grid.col_edges[1:]))
        keys = [(i, _book_key(c)) for i, c in books if not is_mx(c)]
        todo = [(i, bk) for i, bk in keys if any((name, c0, c1, bk, damp, scales) not in self._d for c0, c1 in blocks)]
        if not todo:
            return
        saved = load()
        for i, bk in todo:
            for j, (c0, c1) in enumerate(blocks):
                s = torch.from_numpy(np.ascontiguousarray(saved[i, :, j])).to(device)
                self._d.setdefault((name, c0, c1, bk, damp, scales), (s, torch.ones(len(s), dtype=torch.bool, device=s.device)))


def quantize_rtn(name: str, W: torch.Tensor, H: torch.Tensor, grid: TileGrid, tile_codebook: list[str],
                 codes: dict[str, torch.Tensor], scales: ScaleSearch = ScaleSearch(), memo: ScaleMemo | None = None,
                 damp: float = 0.0) -> QuantLayer:
    """Round-to-nearest-code per tile with the error-optimal scale (float64).

    ``W`` [N, K] float weight, ``H`` [K, K] damped Hessian, ``tile_codebook[g]`` the plan's codebook
    of global tile g; ``scales`` the cost stage's scale search (so RTN reproduces ``e_gc`` exactly).
    ``memo``: row scales searched by earlier plans on the same ``W`` and H (damped by ``damp``).
    """
    from ..quantize import quantize_to_codes, quantize_to_grid

    W = W.double()
    H = H.double()
    N, K = W.shape
    edges, groups = scale_layout(grid, tile_codebook, codes)
    fp = any(isinstance(codes[tile_codebook[t]], Grid) for t in grid.tile.ravel())
    q = torch.empty(N, K, dtype=torch.int16, device=W.device)
    V = torch.empty(N, K, dtype=torch.float32, device=W.device) if fp else None
    S = torch.empty(N, len(grid.col_edges) - 1 if edges is None else len(edges) - 1, dtype=torch.float64, device=W.device)
    row_spans = list(zip(grid.row_edges, grid.row_edges[1:]))
    for j, (c0, c1) in enumerate(zip(grid.col_edges, grid.col_edges[1:])):
        # the scale of a row depends only on that row, so the tiles of a column block that share a
        # codebook are searched in one call (one per (block, codebook) instead of one per tile)
        by_book: dict[str, list[int]] = {}
        for i, (r0, r1) in enumerate(row_spans):
            by_book.setdefault(tile_codebook[grid.tile[i, j]], []).extend(range(r0, r1))
        g = groups[j]
        for book, rows in by_book.items():
            c = codes[book].to(W.device)
            idx = torch.tensor(rows, dtype=torch.long, device=W.device)
            Wt = W[idx, c0:c1]
            if is_mx(c):
                sb = scales.block(Wt, H[c0:c1, c0:c1], c)                # [rows, len(g)]
                qt, vt, _ = quantize_to_grid(Wt, sb.repeat_interleave(MX_BLOCK, 1)[:, :c1 - c0], c)
                S[idx, g[0]:g[-1] + 1] = sb
            else:
                def search(ix, c=c):
                    return scales(W[ix, c0:c1], H[c0:c1, c0:c1], c).to(torch.float64).reshape(-1)
                s = search(idx) if memo is None else memo.rows((name, c0, c1, _book_key(c), damp, scales), idx, N, search)
                if isinstance(c, Grid):
                    qt, vt, _ = quantize_to_grid(Wt, s[:, None], c)
                else:
                    qt, _ = quantize_to_codes(Wt, s[:, None], c)
                    vt = qt
                S[idx, g[0]:g[-1] + 1] = s[:, None]
            q[idx, c0:c1] = qt.round().to(torch.int16)
            if V is not None:
                V[idx, c0:c1] = vt.to(torch.float32)
    return QuantLayer(name, q, S, grid, V, edges)


def _book_key(c) -> tuple:
    """What a codebook quantizes to (its codes, or an FP grid's format, scale rule and values)."""
    if isinstance(c, Grid):
        return (c.format, c.scale, tuple(c.codes.tolist()))
    return tuple(c.tolist())


def block_diag_error(ql: QuantLayer, W: torch.Tensor, H: torch.Tensor) -> np.ndarray:
    """Per-tile ``Σ_{r∈R_g} Δw_r H_{K_g K_g} Δw_rᵀ`` with ``Δw = q·s − w`` (float64); indexed like grid.tile."""
    D = ql.exact() - W.double().to(ql.q.device)
    H = H.double().to(D.device)
    g = ql.grid
    out = np.zeros(g.tile.shape)
    for j, (c0, c1) in enumerate(zip(g.col_edges, g.col_edges[1:])):
        per_row = ((D[:, c0:c1] @ H[c0:c1, c0:c1]) * D[:, c0:c1]).sum(1)
        for i, (r0, r1) in enumerate(zip(g.row_edges, g.row_edges[1:])):
            out[i, j] = float(per_row[r0:r1].sum())
    return out


def code_histograms(ql: QuantLayer) -> dict[int, dict[int, int]]:
    """Global tile id -> {code: count} of the codes the tile actually uses."""
    g = ql.grid
    out = {}
    for i, (r0, r1) in enumerate(zip(g.row_edges, g.row_edges[1:])):
        for j, (c0, c1) in enumerate(zip(g.col_edges, g.col_edges[1:])):
            v, n = torch.unique(ql.q[r0:r1, c0:c1], return_counts=True)
            out[int(g.tile[i, j])] = {int(a): int(b) for a, b in zip(v.tolist(), n.tolist())}
    return out
