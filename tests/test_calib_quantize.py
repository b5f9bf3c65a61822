"""Shared quantizer: exact nearest-code rounding, grid scale search, fast vs float64 paths."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.quantize import best_scales, quantize_to_codes, row_errors, scale_grid, search_scales, tile_errors


def brute_nearest(x: float, codes) -> int:
    """Exact (rational) nearest code; ties -> smaller magnitude -> smaller code."""
    return min(codes, key=lambda c: (abs(Fraction(x) - c), abs(c), c))


@settings(max_examples=60, deadline=None)
@given(codes=st.sets(st.integers(-20, 20), min_size=1, max_size=9),
       halves=st.lists(st.integers(-50, 50), min_size=1, max_size=20),
       noise=st.lists(st.floats(-30, 30, allow_nan=False), min_size=1, max_size=20),
       scale=st.sampled_from([0.0, 0.3, 0.5, 1.0, 1.7e-3]))
def test_quantize_matches_exact_brute_force(codes, halves, noise, scale):
    x = np.array([h / 2 for h in halves] + noise)           # exact midpoints included (ties)
    w = torch.tensor(x * scale if scale else x)
    q, w_hat = quantize_to_codes(w, torch.tensor(scale, dtype=torch.float64), codes)
    xs = (w / scale).numpy() if scale else np.zeros_like(x)
    assert q.tolist() == [brute_nearest(float(v), sorted(codes)) for v in xs]
    assert torch.equal(w_hat, q.double() * scale)
    q32, _ = quantize_to_codes(w.float(), torch.tensor(scale), codes)   # dtype follows w
    assert q32.dtype == torch.int64 and q32.shape == q.shape


def test_tie_rule_and_zero_scale():
    q, w_hat = quantize_to_codes(torch.tensor([0.5, 1.5, -0.5, -1.5, 0.0]), torch.tensor(1.0), [-2, -1, 0, 1, 2])
    assert q.tolist() == [0, 1, 0, -1, 0]
    q, w_hat = quantize_to_codes(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0]]), [-1, 1])
    assert q.tolist() == [[-1, -1]] and torch.all(w_hat == 0)    # |-1| == |1| -> the smaller code


def test_scale_grid_contains_one_and_validates():
    f = scale_grid(15, 0.5, 1.2)
    assert len(f) == 15 and (f == 1.0).any() and f.dtype == torch.float64
    with pytest.raises(UserError):
        scale_grid(0)
    with pytest.raises(UserError):
        scale_grid(5, 1.1, 1.5)


def _problem(R=7, K=9, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(R, K, generator=g, dtype=torch.float64)
    W[2] = 0.0                                                 # an all-zero row
    X = torch.randn(K, n, generator=g, dtype=torch.float64)
    return W, X, (2.0 / n) * X @ X.T


@pytest.mark.parametrize("codes", [range(-8, 8), [-4, -2, -1, 0, 1, 2, 4], [-1, 0, 1]])
def test_search_scales_is_the_grid_argmin(codes):
    W, X, H = _problem()
    f = scale_grid(11, 0.5, 1.3)
    s, e = search_scales(W, H, codes, f)
    cmax = max(abs(c) for c in codes)
    for r in range(W.shape[0]):
        errs = []
        for fk in f.tolist():
            sc = fk * float(W[r].abs().max()) / cmax
            _, wh = quantize_to_codes(W[r], torch.tensor(sc, dtype=torch.float64), codes)
            errs.append(float((2.0 / X.shape[1]) * (((wh - W[r]) @ X) ** 2).sum()))   # from the inputs directly
        k = int(np.argmin(errs))
        assert e[r].item() == pytest.approx(errs[k], rel=1e-9, abs=1e-15)
        assert s[r].item() == pytest.approx(f[k].item() * float(W[r].abs().max()) / cmax, rel=1e-12)
    assert s[2] == 0 and e[2] == 0
    assert torch.allclose(e, row_errors(W, H, codes, s), rtol=1e-12)
    assert torch.equal(best_scales(W, H, codes, n_grid=11, lo=0.5, hi=1.3), s)


def test_fast_path_matches_float64_reference():
    W, _, H = _problem(R=64, K=32, n=200, seed=3)
    f = scale_grid()
    for codes in (range(-8, 8), [-4, -1, 0, 1, 4]):
        s64, e64 = search_scales(W, H, codes, f, fast=False)
        s32, e32 = search_scales(W, H, codes, f, fast=True)
        assert e32.dtype == torch.float64
        assert torch.allclose(e32, row_errors(W, H, codes, s32), rtol=1e-12)   # errors are float64-exact
        assert float(e32.sum()) == pytest.approx(float(e64.sum()), rel=1e-6)
        assert (s32 == s64).float().mean() > 0.95


def test_tile_errors_sums_rows_per_codebook():
    W, _, H = _problem()
    books = [range(-8, 8), [-1, 0, 1]]
    t = tile_errors(W, H, books)
    assert t.shape == (2,)
    for i, c in enumerate(books):
        assert t[i].item() == pytest.approx(float(search_scales(W, H, c)[1].sum()), rel=1e-12)
    assert t[0] < t[1]                                         # a richer codebook never does worse here
