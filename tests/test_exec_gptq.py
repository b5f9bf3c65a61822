"""GPTQ per plan: the one-lookup column sweep against the per-codebook-group loop (``lookup=False``:
the loop the sweep replaced, kept for "mx" and wide FP codebooks), bit for bit.

Random layers (1..40 rows, 1..40 columns; FP cases up to 72), ragged row and column blocks, 1..8
integer codebooks per layer (one code {0}, sparse odd codes without 0, the full 8-bit grid, gaps,
all-positive, all-negative, unsorted with repeats), FP4/FP8 row-scaled and FP4 "mx" codebooks
(E5M2 and "mx" take the per-group path), zero rows and zero tile rows (zero scale), dead Hessian
columns, diagonal H, weights on a 1/8 grid with power-of-two scales (exact cell edges and ties),
random chunk sizes, float64 and float32 working precision, exact and fast scale search.
"""

from __future__ import annotations

import random

import pandas as pd
import torch
from hypothesis import given, settings, strategies as st

from halo_opt.execute.apply import QuantLayer, ScaleSearch, TileGrid, tile_codes
from halo_opt.execute.gptq import quantize_gptq
from halo_opt.formats import get_format
from halo_opt.quantize import MX_BLOCK


# ---- cases ----

INT_BOOKS = {
    "zero": [0],                                   # one code
    "odd": [-7, -3, 1, 5],                         # sparse, odd, no 0
    "int8": list(range(-128, 128)),                # the full 8-bit grid
    "gaps": [-8, -4, -2, -1, 0, 1, 2, 4],          # powers of two
    "c3": [-1, 0, 1],
    "pos": [1, 2, 3, 6],                           # all positive: 0 outside the range
    "neg": [-5, -2],                               # all negative
    "dup": [3, 0, 0, -2, 3, 9],                    # unsorted, repeated
}
FP4 = get_format("fp4_e2m1").codes().tolist()
FP_BOOKS = {  # name: (codes, format, scale rule)
    "fp4": (FP4, "fp4_e2m1", "row"),
    "fp4half": ([0, 1, 2, 3, 9, 10, 11], "fp4_e2m1", "row"),
    "e4m3": (get_format("fp8_e4m3").codes().tolist(), "fp8_e4m3", "row"),
    "e5m2": ([c for c in range(256) if c & 0x7F < 0x7C], "fp8_e5m2", "row"),   # too wide for a table
    "fp4mx": (FP4, "fp4_e2m1", "mx"),
}


class Pow2Scales(ScaleSearch):
    """Scale 2^-2 for every row (0 for an all-zero row): with weights on a grid of 1/8, ``2w/s`` hits
    cell edges and ties between codes exactly."""

    def __call__(self, W, H, codes):
        return torch.where(W.abs().amax(1) > 0, 0.25, 0.0).double()


def _case(seed: int, fp: bool):
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    N, K = rnd.randint(1, 40), rnd.randint(1, 72 if fp else 40)
    R, C = rnd.randint(1, N), rnd.choice([32, 64]) if fp and rnd.random() < 0.5 else rnd.randint(1, K)
    ties = rnd.random() < 0.3
    if ties:   # grid of 1/8: exact edges and ties between codes
        W = torch.randint(-40, 41, (N, K), generator=g).double() / 8
    else:
        W = torch.randn(N, K, generator=g, dtype=torch.float64) * rnd.choice([0.02, 1.0, 30.0])
    for r in rnd.sample(range(N), rnd.randint(0, N // 3)):             # zero rows (zero scale)
        W[r] = 0
    if rnd.random() < 0.3:                                               # zero in one column block only
        r, c = rnd.randrange(N), rnd.randrange(K)
        W[r, c // C * C:c // C * C + C] = 0
    if rnd.random() < 0.25:                                              # diagonal H: no feedback, ties survive
        H = torch.diag(torch.rand(K, generator=g, dtype=torch.float64) + 0.5)
    else:
        mix = torch.randn(K, K, generator=g, dtype=torch.float64) / K ** 0.5 + torch.eye(K)
        X = torch.randn(2 * K + 3, K, generator=g, dtype=torch.float64) @ mix
        H = 2 / len(X) * X.T @ X + 0.01 * torch.eye(K, dtype=torch.float64)
    for k in rnd.sample(range(K), rnd.randint(0, K // 4)):               # dead columns
        H[k, :], H[:, k] = 0, 0
    tiles = pd.DataFrame([dict(tile=t, layer="l", row0=r, row1=min(r + R, N), col0=c, col1=min(c + C, K), macs=1)
                          for t, (r, c) in enumerate((r, c) for r in range(0, N, R) for c in range(0, K, C))])
    grid = TileGrid.from_tiles("l", tiles, (N, K))
    codes = tile_codes(INT_BOOKS)
    names = list(INT_BOOKS)
    if fp:
        books = {k: v for k, (v, f, s) in FP_BOOKS.items()}
        codes |= tile_codes(books, specs={k: {"format": f, "scale": s} for k, (v, f, s) in FP_BOOKS.items()})
        fpn = [k for k in FP_BOOKS if (C % MX_BLOCK == 0 or FP_BOOKS[k][2] != "mx")]
        names = rnd.sample(names, rnd.randint(1, 3)) + rnd.sample(fpn, rnd.randint(1, 2))
    else:
        names = rnd.sample(names, rnd.randint(1, len(names)))
    tc = [rnd.choice(names) for _ in range(len(tiles))]
    kw = dict(blocksize=rnd.randint(1, K + 2), dtype=rnd.choice([torch.float64, torch.float32]),
              scales=Pow2Scales() if ties else ScaleSearch(fast=rnd.random() < 0.5))
    return W, H, grid, tc, codes, kw


def _same(a: QuantLayer, b: QuantLayer) -> None:
    assert torch.equal(a.q, b.q) and torch.equal(a.scales, b.scales)
    assert (a.values is None) == (b.values is None) and (a.values is None or torch.equal(a.values, b.values))
    assert a.scale_edges == b.scale_edges


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 ** 32))
def test_integer_codebooks_bitwise_equal_to_the_group_loop(seed):
    W, H, grid, tc, codes, kw = _case(seed, fp=False)
    _same(quantize_gptq("l", W, H, grid, tc, codes, **kw), quantize_gptq("l", W, H, grid, tc, codes, lookup=False, **kw))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 32))
def test_fp_and_mx_codebooks_bitwise_equal_to_the_group_loop(seed):
    W, H, grid, tc, codes, kw = _case(seed, fp=True)
    _same(quantize_gptq("l", W, H, grid, tc, codes, **kw), quantize_gptq("l", W, H, grid, tc, codes, lookup=False, **kw))
