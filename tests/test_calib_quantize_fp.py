"""FP codebooks in the quantizer: nearest value, grid search and MX block scales vs float64 brute force."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from halo_opt.costs import layer_tile_errors, tile_grid
from halo_opt.errors import UserError
from halo_opt.formats import get_format
from halo_opt.quantize import (grid_of, mx_block_scales, mx_tile_errors, quantize_to_codes, quantize_to_grid,
                               scale_grid, search_scales, search_scales_blocks)

FMTS = ("fp4_e2m1", "fp8_e4m3", "fp8_e5m2")


def _nearest(x: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Brute force: nearest value; ties to the smaller magnitude, then the smaller value."""
    d = np.abs(x[..., None] - vals)
    best = d.min(-1, keepdims=True)
    cand = np.where(d == best, vals, np.nan)
    mag = np.where(np.isnan(cand), np.inf, np.abs(cand))
    cand = np.where(mag == mag.min(-1, keepdims=True), cand, np.inf)
    return np.nanmin(cand, -1)


def _book(fmt, seed, k):
    f = get_format(fmt)
    rng = np.random.default_rng(seed)
    codes = f.codes()
    pick = rng.choice(codes, size=min(k, len(codes)), replace=False)
    return {"codes": sorted(set(pick.tolist()) | {0}), "format": fmt}


@pytest.mark.parametrize("fmt", FMTS)
def test_grid_of_values_and_representatives(fmt):
    f = get_format(fmt)
    g = grid_of({"codes": f.codes().tolist(), "format": fmt})
    vals = np.unique(f.value(f.codes()))                    # ±0 collapse to one value
    assert np.array_equal(g.values.numpy(), vals) and len(g.values) == len(f.codes()) - 1
    assert np.array_equal(f.value(g.codes.numpy()), g.values.numpy()) and int(g.codes[g.values == 0]) == 0  # +0, not −0
    assert torch.equal(g.rep, torch.ldexp(g.values, torch.tensor(g.shift))) and torch.equal(g.rep, g.rep.round())
    assert g.shift == {"fp4_e2m1": 1, "fp8_e4m3": 9, "fp8_e5m2": 16}[fmt] and not g.is_int
    gi = grid_of(list(range(-8, 8)))
    assert gi.is_int and gi.shift == 0 and torch.equal(gi.rep, torch.arange(-8, 8, dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(FMTS), st.integers(0, 10**6), st.integers(2, 40), st.floats(1e-3, 10.0))
def test_quantize_to_grid_is_nearest_value(fmt, seed, k, scale):
    book = _book(fmt, seed, k)
    f = get_format(fmt)
    vals = np.unique(f.value(np.array(book["codes"])))
    rng = np.random.default_rng(seed + 1)
    w = rng.normal(size=(3, 50)) * scale * float(np.abs(vals).max()) * 0.5
    w[0, :len(vals)] = vals * scale                          # exact values
    mids = (vals[1:] + vals[:-1]) / 2                        # exact ties (when representable)
    w[1, :len(mids)] = mids * scale
    s = torch.full((3, 1), scale, dtype=torch.float64)
    codes, v, w_hat = quantize_to_grid(torch.tensor(w), s, book)
    ref = _nearest(torch.tensor(w).div(s).numpy(), vals)
    assert np.array_equal(v.numpy(), ref)
    assert np.array_equal(f.value(codes.numpy()), ref) and set(codes.unique().tolist()) <= set(book["codes"])
    assert torch.equal(w_hat, v * s)                         # ŵ = value·s, bit for bit
    c2, w2 = quantize_to_codes(torch.tensor(w), s, book)     # the general entry point routes FP books here
    assert torch.equal(c2, codes) and torch.equal(w2, w_hat)


def _hessian(K, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(K, 3 * K, generator=g, dtype=torch.float64) * torch.linspace(0.3, 2, K, dtype=torch.float64)[:, None]
    return X @ X.T / X.shape[1] + 0.01 * torch.eye(K, dtype=torch.float64)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(FMTS), st.integers(0, 10**6), st.integers(3, 20))
def test_row_search_on_fp_book_matches_brute_force(fmt, seed, k):
    """Per-row grid search (float64): the first factor minimising Δw H Δwᵀ, from the nearest-value oracle."""
    book = _book(fmt, seed, k)
    vals = np.unique(get_format(fmt).value(np.array(book["codes"])))
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 9, generator=g, dtype=torch.float64)
    H = _hessian(9, seed)
    f = scale_grid()
    s, e = search_scales(W, H, book, f)
    for r in range(4):
        amax = float(W[r].abs().max())
        errs = []
        for k_ in f.tolist():
            sc = k_ * (amax / float(np.abs(vals).max()))             # as the search: f · (max|w| / max|c|)
            d = torch.tensor(_nearest((W[r] / sc).numpy(), vals)) * sc - W[r]
            errs.append(float(d @ H @ d))
        i = int(np.argmin(errs))
        assert float(e[r]) == pytest.approx(errs[i], rel=1e-9, abs=1e-15)
        near = [j for j, x in enumerate(errs) if x <= errs[i] * (1 + 1e-9) + 1e-15]   # ties up to rounding
        assert any(float(s[r]) == f[j].item() * (amax / float(np.abs(vals).max())) for j in near)   # bit for bit
    sf, ef = search_scales(W, H, book, f, fast=True)         # float32 search: errors exact for its scales
    assert (ef >= e - 1e-12 * e.abs().max()).all()


def test_mx_block_scales_ocp_rule_and_search():
    """E8M0 scales: the OCP rule 2^(floor(log2 amax) − e_max), and the search's choice among ×{1, 2, ½}."""
    g = torch.Generator().manual_seed(0)
    K = 70                                                   # 3 blocks, the last partial (6 columns)
    W = torch.randn(5, K, generator=g, dtype=torch.float64) * torch.logspace(-3, 1, 5, dtype=torch.float64)[:, None]
    W[2, 32:64] = 0.0                                        # an all-zero block gets scale 0
    H = _hessian(K, 1)
    for fmt, emax in (("fp4_e2m1", 2), ("fp8_e4m3", 8)):
        book = {"codes": get_format(fmt).codes().tolist(), "format": fmt}
        vals = grid_of(book).values.numpy()
        ocp = mx_block_scales(W, H, book, "ocp")
        srch = mx_block_scales(W, H, book, "search")
        assert ocp.shape == (5, 3) and ocp[2, 1] == 0 and srch[2, 1] == 0
        for r in range(5):
            for b in range(3):
                blk = W[r, 32 * b:32 * b + 32]
                amax = float(blk.abs().max())
                if amax == 0:
                    continue
                s = 2.0 ** (math.floor(math.log2(amax)) - emax)
                assert float(ocp[r, b]) == s
                Hb = H[32 * b:32 * b + len(blk), 32 * b:32 * b + len(blk)]
                errs = []
                for fct in (1.0, 2.0, 0.5):
                    d = torch.tensor(_nearest((blk / (fct * s)).numpy(), vals)) * (fct * s) - blk
                    errs.append(float(d @ Hb @ d))
                assert float(srch[r, b]) == (1.0, 2.0, 0.5)[int(np.argmin(errs))] * s
                assert math.log2(float(srch[r, b])).is_integer()
    with pytest.raises(UserError, match="MX block"):
        mx_tile_errors(W, H, 48, {"codes": [0, 1, 2], "format": "fp4_e2m1"})


@pytest.mark.parametrize("rule", ["ocp", "search"])
def test_mx_tile_errors_brute_force(rule):
    """e_gc = Σ_r Δw_r H_{K_g K_g} Δw_rᵀ with MX block scales (float64), tile width 64 = 2 blocks."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(6, 100, generator=g, dtype=torch.float64)
    H = _hessian(100, 4)
    book = {"codes": [0, 1, 2, 3, 4, 6, 7, 9, 10, 12, 15], "format": "fp4_e2m1", "scale": "mx"}
    vals = grid_of(book).values.numpy()
    s, e = mx_tile_errors(W, H, 64, book, rule)
    assert s.shape == (6, 4) and e.shape == (6, 2)
    S = s.repeat_interleave(32, 1)[:, :100]
    D = torch.tensor(_nearest((W / torch.where(S > 0, S, 1)).numpy(), vals)) * S - W
    for j, (c0, c1) in enumerate(((0, 64), (64, 100))):
        for r in range(6):
            d = D[r, c0:c1]
            assert float(e[r, j]) == pytest.approx(float(d @ H[c0:c1, c0:c1] @ d), rel=1e-10)
    # through the cost tables' entry point, mixed with integer books (whose results are unchanged)
    ints = [list(range(-8, 8)), [-1, 0, 1]]
    E, sc = layer_tile_errors(W, H, (4, 64), ints + [book], fast=False, mx_rule=rule)
    E0, sc0 = layer_tile_errors(W, H, (4, 64), ints, fast=False)
    assert torch.equal(E[:, :2], E0) and torch.equal(sc[:2], sc0) and sc[2].isnan().all()
    grid = tile_grid(6, 100, (4, 64))
    for t, (r0, r1, c0, c1) in enumerate(grid):
        assert float(E[t, 2]) == pytest.approx(float(e[r0:r1, c0 // 64].sum()), rel=1e-12)


def test_row_scaled_fp_book_in_batched_search_equals_single():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(7, 40, generator=g, dtype=torch.float64)
    H = _hessian(40, 6)
    books = [list(range(-8, 8)), {"codes": get_format("fp8_e4m3").codes().tolist(), "format": "fp8_e4m3"},
             {"codes": get_format("fp4_e2m1").codes().tolist(), "format": "fp4_e2m1"}]
    f = scale_grid()
    s, e = search_scales_blocks(W, H, 16, books, f, fast=False)
    for c, b in enumerate(books):
        for j in range(3):
            blk = slice(16 * j, min(16 * j + 16, 40))
            s1, e1 = search_scales(W[:, blk], H[blk, blk], b, f)
            assert torch.equal(s[c, :, j], s1) and torch.allclose(e[c, :, j], e1, rtol=1e-12, atol=0)


def test_grid_of_a_hardware_codebook_uses_its_values():
    from halo_opt.hardware.codebooks import Codebook

    f = get_format("fp4_e2m1")
    codes = [0, 1, 2, 3, 9, 10]
    cb = Codebook("x", tuple(codes), 100.0, 1.0, "t", tuple(float(v) for v in f.value(codes)))
    g, ref = grid_of(cb), grid_of({"codes": codes, "format": "fp4_e2m1"})
    assert torch.equal(g.values, ref.values) and torch.equal(g.codes, ref.codes) and g.shift == ref.shift == 1
    gi = grid_of(Codebook("i", (-1, 0, 1), 100.0, 1.0))           # integer codebook: values = codes
    assert gi.is_int and torch.equal(gi.rep, torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    with pytest.raises(UserError, match="binary digits"):
        grid_of({"codes": [0, 1, 2], "values": [0.0, 0.1, 1000.0]})
