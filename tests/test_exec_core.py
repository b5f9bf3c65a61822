"""Executor core: per-plan RTN/GPTQ on a tiny synthetic model; predicted == measured; timing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.execute import synthetic as syn
from halo_opt.execute.apply import ScaleMemo, TileGrid, block_diag_error, quantize_rtn, tile_codes
from halo_opt.execute.gptq import quantize_gptq
from halo_opt.execute.inputs import check_plan, load_costs
from halo_opt.execute.run import dequantized_model, execute_plan
from halo_opt.execute.validate import heldout_hessians, measure_output_errors, output_errors, predicted_errors, realized_cost, timing_check


class Tiny(torch.nn.Module):
    """Token-wise MLP 'encoder': [B, T, 12] -> [B, T, 8]."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a, self.b, self.c = torch.nn.Linear(12, 20), torch.nn.Linear(20, 16), torch.nn.Linear(16, 8)
        for m in (self.a, self.b, self.c):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.zero_()

    def forward(self, inputs_embeds, attention_mask=None):
        return self.c(torch.relu(self.b(torch.relu(self.a(inputs_embeds)))))


def _inputs(seed, n=6, T=10):
    g = torch.Generator().manual_seed(seed)
    return [{"inputs_embeds": torch.randn(2, T, 12, generator=g), "attention_mask": torch.ones(2, T, dtype=torch.long)} for _ in range(n)]


def _setup(tmp_path, tile=(8, 100), damp_rel=0.0):
    model = Tiny().eval()
    layers = {"a": model.a, "b": model.b, "c": model.c}
    calib = _inputs(1)
    H = syn.hessians(layers, lambda: [model(**b) for b in calib])
    W = {n: m.weight.detach() for n, m in layers.items()}
    syn.write_calib(tmp_path / "calib", H)
    syn.write_costs(tmp_path / "costs", W, {n: h for n, (h, _) in H.items()}, tile, damp_rel)
    return model, layers, calib, H, W


def _run(model, batches):
    def run(set_mask):
        for b in batches:
            set_mask(b["attention_mask"])
            model(**b)
    return run


def test_rtn_prediction_equals_measurement_on_calibration(tmp_path):
    """Single column block per layer (tile width >= K): e_gc sums to the full tr(ΔW H ΔWᵀ)."""
    model, layers, calib, H, W = _setup(tmp_path)
    costs = load_costs(tmp_path / "costs")
    plan = syn.make_plan(tmp_path / "costs", lambda g: ["full", "c9", "pow2", "c3"][g % 4])
    ex = execute_plan(plan, costs, W, lambda n: H[n][0], "rtn")
    pred = predicted_errors(costs, plan["tile_codebook"])
    deltas = {n: ql.exact() - W[n].double() for n, ql in ex.layers.items()}
    meas = measure_output_errors(layers, deltas, _run(model, calib))
    for n in layers:
        assert meas[n][1] == 120
        np.testing.assert_allclose(meas[n][0], pred[n], rtol=1e-6)


def test_heldout_hessians_give_the_measured_output_errors(tmp_path):
    """tr(ΔW H_heldout ΔWᵀ) from one float forward equals (2/n) Σ_t ‖ΔW x_t‖² measured per plan,
    padding masks included."""
    model, layers, _, H, W = _setup(tmp_path, tile=(8, 6))
    costs = load_costs(tmp_path / "costs")
    held = _inputs(7, n=3)
    held[1]["attention_mask"][0, 6:] = 0
    Hh = heldout_hessians(layers, _run(model, held))
    for k, pick in enumerate((lambda g: "full", lambda g: ["full", "c9", "pow2", "c3"][g % 4], lambda g: "c3")):
        ex = execute_plan(syn.make_plan(tmp_path / "costs", pick), costs, W, lambda n: H[n][0], "rtn")
        deltas = {n: ql.dequantize(torch.float64) - W[n].double() for n, ql in ex.layers.items()}
        want, got = measure_output_errors(layers, deltas, _run(model, held)), output_errors(deltas, Hh)
        for n in layers:
            assert got[n][1] == want[n][1] == 3 * 2 * 10 - 4
            np.testing.assert_allclose(got[n][0], want[n][0], rtol=1e-10)


def test_scale_memo_reproduces_rtn_bitwise(tmp_path):
    """Plans sharing codebooks on other rows reuse searched row scales: codes and scales equal a
    fresh RTN bit for bit, in any order of plans."""
    _, _, _, H, W = _setup(tmp_path, tile=(4, 6), damp_rel=0.01)
    costs = load_costs(tmp_path / "costs")
    books = ["full", "c9", "pow2", "c3"]
    plans = [syn.make_plan(tmp_path / "costs", lambda g, k=k: books[(g * (k + 1) + k) % 4]) for k in range(5)]
    memo = ScaleMemo()
    for plan in plans + plans[::-1]:
        a = execute_plan(plan, costs, W, lambda n: H[n][0], "rtn", memo=memo)
        b = execute_plan(plan, costs, W, lambda n: H[n][0], "rtn")
        for n in a.layers:
            assert torch.equal(a.layers[n].q, b.layers[n].q) and torch.equal(a.layers[n].scales, b.layers[n].scales)


def test_rtn_prediction_equals_block_diag_measure_with_damping(tmp_path):
    """Several column blocks + damping: the cost table equals the executor's block-diagonal measure."""
    model, layers, calib, H, W = _setup(tmp_path, tile=(8, 6), damp_rel=0.01)
    costs = load_costs(tmp_path / "costs")
    plan = syn.make_plan(tmp_path / "costs", lambda g: ["c9", "full", "c3"][g % 3])
    ex = execute_plan(plan, costs, W, lambda n: H[n][0], "rtn")
    pred = predicted_errors(costs, plan["tile_codebook"])
    for n, ql in ex.layers.items():
        Hd = H[n][0] + costs.damp(n) * torch.eye(W[n].shape[1], dtype=torch.float64)
        np.testing.assert_allclose(block_diag_error(ql, W[n], Hd).sum(), pred[n], rtol=1e-9)


def test_executed_codes_meet_level_timing(tmp_path):
    model, layers, calib, H, W = _setup(tmp_path, tile=(8, 6))
    costs = load_costs(tmp_path / "costs")
    lv = {"a": "nominal", "b": "fast", "c": "turbo"}
    ok = {"nominal": ["full", "c9", "pow2", "c3"], "fast": ["c9", "c3"], "turbo": ["c3"]}
    lay = costs.tiles["layer"].to_numpy()
    plan = syn.make_plan(tmp_path / "costs", lambda g: ok[lv[lay[g]]][g % len(ok[lv[lay[g]]])], lv)
    level_of = check_plan(plan, costs, list(W))
    for method in ("rtn", "gptq"):
        ex = execute_plan(plan, costs, W, lambda n: H[n][0], method)
        t = timing_check(costs, plan["tile_codebook"], level_of, ex.histograms(), syn.profile_table())
        assert t["in_codebook"].all() and t["meets_timing"].all()
        assert (t["delay_realized_ps"] <= t["delay_planned_ps"]).all()
        rc = realized_cost(costs, plan, t, ex.histograms())
        assert rc["realized"]["latency_s"] <= rc["planned"]["latency_s"] + 1e-18
    bad = dict(plan, tile_codebook=["full"] * len(costs.tiles))  # full misses 'fast'/'turbo'
    with pytest.raises(UserError, match="misses the timing"):
        execute_plan(bad, costs, W, lambda n: H[n][0], "rtn")


def test_plan_from_other_costs_or_model_is_rejected(tmp_path):
    model, layers, calib, H, W = _setup(tmp_path)
    costs = load_costs(tmp_path / "costs")
    plan = syn.make_plan(tmp_path / "costs", lambda g: "full")
    other = dict(plan, meta=dict(plan["meta"], costs_sha256="0" * 64))
    with pytest.raises(UserError, match="another cost folder"):
        execute_plan(other, costs, W, lambda n: H[n][0])
    with pytest.raises(UserError, match="not a linear layer of the model"):
        execute_plan(plan, costs, {"a": W["a"], "b": W["b"]}, lambda n: H[n][0])
    with pytest.raises(UserError, match="tiles"):
        execute_plan(dict(plan, tile_codebook=plan["tile_codebook"][:-1]), costs, W, lambda n: H[n][0])


def _obs_reference(W, H, codes, s):
    """Unbatched OBS-style oracle: quantize column k, then w_F -= (w_k - q_k) / [H_F⁻¹]_00 · [H_F⁻¹]_0,: over F = {k..K-1}."""
    W = W.clone().double()
    K = W.shape[1]
    Q = torch.empty_like(W)
    for k in range(K):
        Hi = torch.linalg.inv(H[k:, k:])
        x = W[:, k] / s
        q = codes[(x[:, None] - codes[None]).abs().argmin(1)]
        Q[:, k] = q
        err = (W[:, k] - q * s) / Hi[0, 0]
        W[:, k:] -= err[:, None] * Hi[0][None, :]
    return Q


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 7))
def test_gptq_matches_obs_oracle_and_is_blocksize_invariant(seed, bs):
    g = torch.Generator().manual_seed(seed)
    N, K = 5, 7
    W = torch.randn(N, K, generator=g, dtype=torch.float64)
    X = torch.randn(40, K, generator=g, dtype=torch.float64)
    H = 2 / 40 * X.T @ X + 0.01 * torch.eye(K, dtype=torch.float64)
    import pandas as pd
    grid = TileGrid.from_tiles("l", pd.DataFrame([dict(tile=0, layer="l", row0=0, row1=N, col0=0, col1=K, macs=1)]), (N, K))
    codes = tile_codes({"c": [-3, -1, 0, 2, 5]})
    ql = quantize_gptq("l", W, H, grid, ["c"], codes, blocksize=bs)
    ref = _obs_reference(W, H, codes["c"], ql.scales[:, 0])
    assert torch.equal(ql.q.double(), ref)
    assert torch.equal(quantize_gptq("l", W, H, grid, ["c"], codes, blocksize=K).q, ql.q)


def test_gptq_with_diagonal_hessian_equals_rtn():
    g = torch.Generator().manual_seed(3)
    N, K = 12, 10
    W = torch.randn(N, K, generator=g, dtype=torch.float64)
    H = torch.diag(torch.rand(K, generator=g, dtype=torch.float64) + 0.5)
    import pandas as pd
    tiles = pd.DataFrame([dict(tile=i * 2 + j, layer="l", row0=r, row1=min(r + 8, N), col0=c, col1=min(c + 6, K), macs=1)
                          for i, r in enumerate((0, 8)) for j, c in enumerate((0, 6))])
    grid = TileGrid.from_tiles("l", tiles, (N, K))
    codes = tile_codes(syn.CODEBOOKS)
    tc = ["full", "c3", "pow2", "c9"]
    a, b = quantize_rtn("l", W, H, grid, tc, codes), quantize_gptq("l", W, H, grid, tc, codes, blocksize=3)
    assert torch.equal(a.q, b.q) and torch.equal(a.scales, b.scales)


def test_gptq_lowers_full_layer_error(tmp_path):
    model, layers, calib, H, W = _setup(tmp_path, tile=(8, 6))
    costs = load_costs(tmp_path / "costs")
    plan = syn.make_plan(tmp_path / "costs", lambda g: "c9")
    err = {}
    for m in ("rtn", "gptq"):
        ex = execute_plan(plan, costs, W, lambda n: H[n][0], m)
        err[m] = sum(float((((ql.exact() - W[n].double()) @ H[n][0]) * (ql.exact() - W[n].double())).sum()) for n, ql in ex.layers.items())
        qm = dequantized_model(model, layers, ex)
        for n, ql in ex.layers.items():
            assert torch.equal(getattr(qm, n).weight, ql.dequantize())
            assert set(ql.q.unique().tolist()) <= set(syn.CODEBOOKS["c9"])
    assert err["gptq"] < err["rtn"]


def test_non_grid_tiles_rejected():
    import pandas as pd
    tiles = pd.DataFrame([dict(tile=0, layer="l", row0=0, row1=4, col0=0, col1=4, macs=1),
                          dict(tile=1, layer="l", row0=0, row1=4, col0=2, col1=6, macs=1)])
    with pytest.raises(UserError, match="grid"):
        TileGrid.from_tiles("l", tiles, (4, 6))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 16), st.integers(1, 16), st.integers(0, 99))
def test_grid_group_scales_reproduce_dequantized_weight(N, K, R, C, seed):
    """Per-(row, tile) scales as compressed-tensors groups (size = gcd of tile widths) give the same weight."""
    import pandas as pd
    from halo_opt.execute.apply import QuantLayer
    from halo_opt.execute.export import group_scales, group_size

    tiles = pd.DataFrame([dict(tile=i, layer="l", row0=r, row1=min(r + R, N), col0=c, col1=min(c + C, K), macs=1)
                          for i, (r, c) in enumerate((r, c) for r in range(0, N, R) for c in range(0, K, C))])
    grid = TileGrid.from_tiles("l", tiles, (N, K))
    assert (np.sort(grid.tile.ravel()) == np.arange(len(tiles))).all()
    g = torch.Generator().manual_seed(seed)
    ql = QuantLayer("l", torch.randint(-8, 8, (N, K), generator=g, dtype=torch.int16),
                    torch.rand(N, grid.tile.shape[1], generator=g, dtype=torch.float64), grid)
    gs = group_size(ql)
    assert K % gs == 0 and all(w % gs == 0 for w in np.diff(grid.col_edges))
    w_ct = ql.q.float() * group_scales(ql).repeat_interleave(gs, dim=1)
    assert torch.equal(w_ct, ql.dequantize())
