"""Batched layer search (search_scales_blocks / layer_tile_errors) == the per-block float64 reference."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

import halo_opt.quantize as Q
from halo_opt.costs import layer_tile_errors, tile_grid
from halo_opt.errors import UserError
from halo_opt.quantize import quantize_to_codes, scale_grid, search_scales, search_scales_blocks

BOOKS = [[0], [-1, 0, 1], list(range(-8, 8)), [1, 2, 5], [-128, -3, 0, 64, 127], [-2, 2]]


def reference(W, H, width, codebooks, factors):
    """Per column block, per codebook, per grid factor, in float64: first factor minimising Δw H Δwᵀ."""
    N, K = W.shape
    s_all, e_all = [], []
    for c in codebooks:
        cmax = max(max(abs(v) for v in c), 1)
        s_c, e_c = [], []
        for c0 in range(0, K, width):
            Wb, Hb = W[:, c0:c0 + width], H[c0:c0 + width, c0:c0 + width]
            s0 = Wb.abs().amax(-1) / cmax
            errs = []
            for f in factors.tolist():
                d = quantize_to_codes(Wb, (f * s0)[:, None], c)[1] - Wb
                errs.append(((d @ Hb) * d).sum(-1))
            errs = torch.stack(errs)                                  # [F, N]
            k = torch.tensor([min(range(len(factors)), key=lambda i: (errs[i, r].item(), i)) for r in range(N)])
            s_c.append(factors[k] * s0)
            e_c.append(errs[k, torch.arange(N)])
        s_all.append(torch.stack(s_c, 1))
        e_all.append(torch.stack(e_c, 1))
    return torch.stack(s_all), torch.stack(e_all)                    # [C, N, nb]


def problem(N, K, seed, zero_rows=(), scale=1.0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, K, generator=g, dtype=torch.float64) * scale
    for r in zero_rows:
        W[r % N] = 0.0
    X = torch.randn(K, 2 * K + 3, generator=g, dtype=torch.float64) * torch.linspace(0.3, 2, K, dtype=torch.float64)[:, None]
    return W, (2.0 / X.shape[1]) * X @ X.T


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 9), K=st.integers(1, 17), width=st.integers(1, 20), seed=st.integers(0, 10**6),
       books=st.lists(st.sampled_from(BOOKS) | st.sets(st.integers(-12, 12), min_size=1, max_size=6).map(sorted),
                      min_size=1, max_size=4),
       zero=st.lists(st.integers(0, 8), max_size=2), n_grid=st.integers(1, 9))
def test_float64_batched_equals_per_block_reference(N, K, width, seed, books, zero, n_grid):
    W, H = problem(N, K, seed, zero)
    f = scale_grid(n_grid, 0.4, 1.3)
    s, e = search_scales_blocks(W, H, width, books, f, fast=False)
    s_ref, e_ref = reference(W, H, width, books, f)
    assert s.shape == e.shape == (len(books), N, -(-K // width)) and s.dtype == e.dtype == torch.float64
    assert torch.equal(s, s_ref)                                     # same choices, same scales bit for bit
    assert torch.allclose(e, e_ref, rtol=1e-12, atol=1e-300)
    for r in zero:
        assert torch.all(s[:, r % N] == 0) and torch.all(e[:, r % N] == 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_choices_match_reference_up_to_float32_ties(seed):
    W, H = problem(37, 45, seed, zero_rows=[5], scale=0.02)
    f = scale_grid()
    s, e = search_scales_blocks(W, H, 16, BOOKS, f, fast=True)
    s_ref, e_ref = reference(W, H, 16, BOOKS, f)
    _, e_chk = search_scales_blocks(W, H, 16, BOOKS, f, fast=False)
    assert torch.equal(e_chk, e_ref) or torch.allclose(e_chk, e_ref, rtol=1e-12, atol=1e-300)
    # errors are the float64 form of the returned scales
    nb = s.shape[-1]
    for c, book in enumerate(BOOKS):
        for j in range(nb):
            Wb, Hb = W[:, 16 * j:16 * j + 16], H[16 * j:16 * j + 16, 16 * j:16 * j + 16]
            d = quantize_to_codes(Wb, s[c, :, j:j + 1], book)[1] - Wb
            assert torch.allclose(e[c, :, j], ((d @ Hb) * d).sum(-1), rtol=1e-12, atol=1e-300)
    differ = s != s_ref
    assert differ.float().mean() < 0.02
    assert torch.all((e - e_ref)[differ].abs() <= 1e-5 * e_ref[differ])   # only float32 near-ties differ
    assert torch.all(e >= e_ref * (1 - 1e-12))                         # never better than the float64 grid minimum


def test_ties_go_to_the_first_factor():
    W, H = problem(6, 10, 3, zero_rows=[2])
    f = torch.tensor([1.0, 0.5, 1.0, 0.5], dtype=torch.float64)       # duplicates tie exactly
    for fast in (False, True):
        s, _ = search_scales_blocks(W, H, 4, [[0], [-1, 0, 1]], f, fast)
        s0 = torch.stack([W[:, c0:c0 + 4].abs().amax(-1) for c0 in range(0, 10, 4)], 1)
        assert torch.equal(s[0], s0)                                   # {0}: every factor ties -> the first (1.0)
        k1 = torch.where(s[1] == s0, 0, 1)                             # {-1,0,1}: only indices 0 or 1, never 2 or 3
        assert torch.equal(s[1], f[k1] * s0)


@pytest.mark.parametrize("budget", [1, 3000, 1 << 30])
def test_chunking_does_not_change_results(monkeypatch, budget):
    W, H = problem(23, 50, 7, zero_rows=[0])
    f = scale_grid(7)
    ref = search_scales_blocks(W, H, 12, BOOKS, f, fast=False)
    monkeypatch.setitem(Q.CHUNK_BYTES, "cpu", budget)                 # 1 row at a time ... every block in one chunk
    for fast in (False, True):
        s, e = search_scales_blocks(W, H, 12, BOOKS, f, fast)
        if not fast:
            assert torch.equal(s, ref[0]) and torch.allclose(e, ref[1], rtol=1e-12, atol=1e-300)
        else:
            assert (s == ref[0]).float().mean() > 0.98


def test_single_block_search_scales_is_the_layer_search():
    W, H = problem(11, 13, 9, zero_rows=[4])
    for book in BOOKS:
        s, e = search_scales(W, H, book)
        s_ref, e_ref = reference(W, H, 13, [book], scale_grid())
        assert torch.equal(s, s_ref[0, :, 0]) and torch.allclose(e, e_ref[0, :, 0], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("fast", [False, True])
def test_layer_tile_errors_sums_rows_of_each_tile(fast):
    W, H = problem(10, 23, 11, zero_rows=[9])
    tile = (4, 7)
    e, scales = layer_tile_errors(W, H, tile, BOOKS, fast=fast)
    s_ref, e_ref = search_scales_blocks(W, H, 7, BOOKS, fast=fast)
    assert torch.equal(scales, s_ref)
    for g, (r0, r1, c0, c1) in enumerate(tile_grid(10, 23, tile)):
        assert torch.allclose(e[g], e_ref[:, r0:r1, c0 // 7].sum(1), rtol=1e-13, atol=0)


def test_bad_arguments_are_user_errors():
    W, H = problem(4, 6, 0)
    with pytest.raises(UserError):
        search_scales_blocks(W, H, 0, BOOKS)
    with pytest.raises(UserError):
        search_scales_blocks(W, H, 3, BOOKS, backend="magic")
    if not torch.cuda.is_available():
        with pytest.raises(UserError):
            search_scales_blocks(W, H, 3, BOOKS, fast=True, backend="triton")


@pytest.mark.skipif(not torch.cuda.is_available() or Q.triton is None, reason="needs CUDA and Triton")
@pytest.mark.parametrize("width", [16, 100, 128])
def test_triton_kernel_matches_float32_torch_search(width):
    W, H = problem(301, 3 * width + 5, 13, zero_rows=[7, 300], scale=0.05)
    W, H = W.cuda(), H.cuda()
    f = scale_grid()
    s_t, e_t = search_scales_blocks(W, H, width, BOOKS, f, fast=True, backend="triton")
    s_r, e_r = search_scales_blocks(W, H, width, BOOKS, f, fast=False, backend="torch")
    differ = s_t != s_r
    assert differ.float().mean() < 0.01
    assert torch.all((e_t - e_r)[differ].abs() <= 1e-5 * e_r[differ])
    assert torch.all(s_t[:, [7, 300]] == 0) and torch.all(e_t[:, [7, 300]] == 0)
