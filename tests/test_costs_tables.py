"""Cost tables: errors against stored inputs, tiling, roofline latency, levels, CLI, bad inputs."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from calib_helpers import TEXT, TwoLayer, small_profile, tiny_hf, two_layer_forward
from hypothesis import given, settings, strategies as st

from halo_opt.accelerators import GPU, LayerShape, SystolicArray, Workload, load_accelerator
from halo_opt.calibration import TokenBatch, calibrate, from_module
from halo_opt.calibration.hessian import hessian_path
from halo_opt.cli import main
from halo_opt.costs import build_costs, layer_tile_errors, tile_grid
from halo_opt.errors import UserError
from halo_opt.hardware.codebooks import load_codebooks
from halo_opt.hardware.dvfs import load_dvfs, load_voltage_law
from halo_opt.quantize import quantize_to_codes, scale_grid

BOOKS = [list(range(-8, 8)), [-1, 0, 1], [-8, -4, -2, -1, 0, 1, 2, 4]]


def _layer(N=10, K=12, n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, K, generator=g, dtype=torch.float64)
    X = torch.randn(K, n, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, K, dtype=torch.float64)[:, None]
    return W, X, (2.0 / n) * X @ X.T


@pytest.mark.parametrize("fast", [False, True])
def test_tile_errors_equal_output_error_from_stored_inputs(fast):
    """Per tile, and summed over a column block: e == (2/n)‖ΔW X‖² restricted to those rows/columns.

    Over the whole layer the tiles keep only the column-block-diagonal part of tr(ΔW H ΔWᵀ):
    full = Σ e + cross terms between column blocks (rows never interact)."""
    W, X, H = _layer()
    n, tile = X.shape[1], (4, 5)                                # 3 row blocks x 3 column blocks, ragged edges
    grid = tile_grid(*W.shape, tile)
    e, scales = layer_tile_errors(W, H, tile, BOOKS, fast=fast)
    assert e.shape == (9, 3) and scales.shape == (3, 10, 3)
    for c, book in enumerate(BOOKS):
        dW = torch.zeros_like(W)
        for j, c0 in enumerate(range(0, 12, 5)):
            cols = slice(c0, min(c0 + 5, 12))
            _, wh = quantize_to_codes(W[:, cols], scales[c, :, j:j + 1], book)
            dW[:, cols] = wh - W[:, cols]
        for g, (r0, r1, c0, c1) in enumerate(grid):              # each tile alone
            direct = (2.0 / n) * float(((dW[r0:r1, c0:c1] @ X[c0:c1]) ** 2).sum())
            assert e[g, c].item() == pytest.approx(direct, rel=1e-6)
        for c0 in range(0, 12, 5):                              # one column block, all its row tiles
            blk = [g for g, t in enumerate(grid) if t[2] == c0]
            cols = slice(c0, min(c0 + 5, 12))
            direct = (2.0 / n) * float(((dW[:, cols] @ X[cols]) ** 2).sum())
            assert e[blk, c].sum().item() == pytest.approx(direct, rel=1e-6)
        full = (2.0 / n) * float(((dW @ X) ** 2).sum())
        cross = full - sum((2.0 / n) * float(((dW[:, s:s + 5] @ X[s:s + 5]) ** 2).sum()) for s in range(0, 12, 5))
        assert e[:, c].sum().item() == pytest.approx(full - cross, rel=1e-6)
        assert abs(cross) > 1e-9 * full                          # the omitted part is real, not zero
    # a single column block spanning K: the tile sum is the full output error
    e1, s1 = layer_tile_errors(W, H, (3, 12), BOOKS[:1], fast=fast)
    _, wh = quantize_to_codes(W, s1[0, :, :1], BOOKS[0])
    assert e1.sum().item() == pytest.approx((2.0 / n) * float((((wh - W) @ X) ** 2).sum()), rel=1e-6)


def test_scales_are_the_per_row_tile_grid_minimum():
    W, X, H = _layer(N=5, K=8, n=30, seed=2)
    f = scale_grid(9, 0.5, 1.2)
    e, _ = layer_tile_errors(W, H, (5, 8), [[-2, -1, 0, 1, 2]], f, fast=False)
    best = 0.0
    for r in range(5):                                         # brute force over the grid, from X directly
        s0 = float(W[r].abs().max()) / 2
        errs = [(2.0 / 30) * float((((quantize_to_codes(W[r], torch.tensor(k * s0, dtype=torch.float64),
                                                        [-2, -1, 0, 1, 2])[1] - W[r]) @ X) ** 2).sum()) for k in f.tolist()]
        best += min(errs)
    assert e.sum().item() == pytest.approx(best, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 40), K=st.integers(1, 40), tr=st.integers(1, 16), tc=st.integers(1, 16))
def test_tiles_partition_the_weight(N, K, tr, tc):
    cover = np.zeros((N, K), int)
    for r0, r1, c0, c1 in tile_grid(N, K, (tr, tc)):
        assert 0 < r1 - r0 <= tr and 0 < c1 - c0 <= tc
        cover[r0:r1, c0:c1] += 1
    assert (cover == 1).all()


class _Lv:
    def __init__(self, f):
        self.freq_hz = f


def test_systolic_and_gpu_cycle_models_and_roofline():
    tpu = load_accelerator("tpu_like")
    assert isinstance(tpu, SystolicArray) and (tpu.rows, tpu.cols) == (256, 256) and tpu.bandwidth_Bps == 34e9
    lay = LayerShape("x", 384, 1536, 128)
    assert tpu.folds(lay) == 2 * 6 and tpu.cycles(lay) == 12 * (2 * 256 + 256 + 128 - 2)
    small = SystolicArray("s", 1e9, 16, "tpu_like", "generic", (4, 4), rows=4, cols=4)
    assert small.cycles(LayerShape("y", 4, 4, 1)) == 2 * 4 + 4 + 1 - 2        # one fold, one row
    assert small.cycles(LayerShape("y", 5, 9, 3)) == 2 * 3 * (8 + 4 + 3 - 2)
    gpu = load_accelerator("gpu_like")
    assert isinstance(gpu, GPU) and gpu.n_macs == 132 * 4096
    big = LayerShape("z", 4096, 4096, 2048)
    assert gpu.cycles(big) == math.ceil(big.macs / (132 * 4096))
    # prefill: compute-bound, latency scales with 1/f; decode: memory-bound, clock does not help
    t1, cb1 = gpu.latency(big, _Lv(1e9))
    t2, cb2 = gpu.latency(big, _Lv(2e9))
    assert cb1 and cb2 and t1 == pytest.approx(2 * t2)
    dec = LayerShape("z", 4096, 4096, Workload("decode", batch=1).tokens)
    d1, c1 = gpu.latency(dec, _Lv(1e9))
    d2, c2 = gpu.latency(dec, _Lv(3e9))
    assert not c1 and not c2 and d1 == d2 == pytest.approx(gpu.bytes(dec) / gpu.bandwidth_Bps)
    assert tpu.bytes(lay) == 384 * 1536                        # activations stay in the unified buffer
    assert Workload("prefill", 2, 64).tokens == 128 and Workload("decode", 4, 64).tokens == 4
    with pytest.raises(UserError):
        Workload("train")
    with pytest.raises(UserError, match="unknown accelerator"):
        load_accelerator("abacus")


def _calibrated(tmp_path):
    model = TwoLayer()
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 50, (6, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    tb = TokenBatch(ids, mask, {"seed": 5})
    ad = from_module(model, two_layer_forward)
    calibrate(ad, tb, tmp_path / "calib", batch_size=4, progress=False)
    keep = mask.bool()
    with torch.no_grad():
        x1 = model.emb(ids)[keep].double()
        x2 = torch.relu(model.fc1(model.emb(ids)))[keep].double()
    return ad, {"fc1": x1.T, "fc2": x2.T}


def test_build_costs_end_to_end_against_stored_inputs(tmp_path):
    ad, X = _calibrated(tmp_path)
    prof = small_profile(tmp_path / "prof")
    out = build_costs(tmp_path / "calib", prof, tmp_path / "costs", "tpu_like", (4, 4), Workload("prefill", 2, 16),
                      model=ad, damp=0.0, fast=False, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    layers, tiles = pd.read_parquet(out / "layers.parquet"), pd.read_parquet(out / "tiles.parquet")
    errors, lat = pd.read_parquet(out / "errors.parquet"), pd.read_parquet(out / "latency.parquet")
    assert list(layers["layer"]) == ["fc1", "fc2"] and list(layers["order"]) == [0, 1]
    assert list(errors["tile"]) == list(tiles["tile"]) == list(range(len(tiles)))
    books = load_codebooks(out / "codebooks.json")
    assert list(errors.columns[1:]) == [b.name for b in books]
    f = scale_grid()
    for _, t in tiles.iterrows():                              # brute force from the stored inputs
        W = ad.layer(t["layer"]).weight().double()[t["row0"]:t["row1"], t["col0"]:t["col1"]]
        Xg = X[t["layer"]][t["col0"]:t["col1"]]
        n = X[t["layer"]].shape[1]
        for b in books:
            cmax = max(abs(c) for c in b.codes)
            best = sum(min((2.0 / n) * float((((quantize_to_codes(w, torch.tensor(k * float(w.abs().max()) / cmax,
                                                                                      dtype=torch.float64), b.codes)[1] - w) @ Xg) ** 2).sum())
                           for k in f.tolist()) for w in W)
            assert errors.loc[t["tile"], b.name] == pytest.approx(best, rel=1e-6, abs=1e-12)
    assert (tiles.groupby("layer")["macs"].sum() == layers.set_index("layer")["macs"]).all()
    assert (layers["tokens"] == 32).all() and (layers["damp"] == 0).all()
    trs = [(2.0 / X[n].shape[1]) * float(((ad.layer(n).weight().double() @ X[n]) ** 2).sum()) for n in ("fc1", "fc2")]
    assert meta["normaliser"] == pytest.approx(sum(trs), rel=1e-9)
    assert meta["tile"] == [4, 4] and meta["v0"] == 1.0 and set(meta["switch"]) == {"time_s", "energy_j"}
    # levels: compat null exactly where the DVFS table says the codebook misses timing
    levels = json.loads((out / "levels.json").read_text())
    from halo_opt.accelerators import load_accelerator

    acc = load_accelerator("tpu_like")  # anchor = "nominal": the nominal level runs at the part's clock
    table = load_dvfs("tpu_like", next(b for b in books if b.name == "full").delay_ps, load_voltage_law("generic"), acc.anchor_hz)
    assert acc.anchor == "nominal" and next(l for l in levels["levels"] if l["name"] == "nominal")["freq_hz"] == pytest.approx(700e6)
    assert meta["clock"]["anchor"] == "nominal" and 0 <= meta["compute_bound_share"]["layer"] <= 1
    for b in books:
        for lv in table.levels:
            s = table.slack_ps(b.delay_ps, lv)
            got = levels["compat"][b.name][lv.name]
            assert (got is None) == (s < 0) and (got is None or got == pytest.approx(s))
    assert levels["compat"]["full"]["nominal"] is not None and levels["compat"]["full"]["f1.50"] is None
    assert len(lat) == 2 * len(table.levels) and lat["seconds"].gt(0).all()
    nominal = next(l for l in levels["levels"] if l["name"] == "nominal")
    assert nominal["leak_power_w"] == pytest.approx(2e-6 * 256 * 256)
    # damping is recorded, and errors of a richer codebook never exceed a subset's at the same tile
    out2 = build_costs(tmp_path / "calib", prof, tmp_path / "costs2", "tpu_like", (4, 4), model=ad, progress=False)
    d = pd.read_parquet(out2 / "layers.parquet")["damp"]
    assert (d > 0).all()


def test_costs_bad_inputs(tmp_path):
    ad, _ = _calibrated(tmp_path)
    prof = small_profile(tmp_path / "prof")
    with pytest.raises(UserError, match="SHA-256"):
        build_costs(tmp_path / "calib", prof, tmp_path / "o", model=from_module(TwoLayer(seed=3), two_layer_forward), progress=False)
    with pytest.raises(UserError, match="in-memory model"):
        build_costs(tmp_path / "calib", prof, tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="codebooks"):
        build_costs(tmp_path / "calib", prof, tmp_path / "o", codebooks_path=tmp_path / "none.json", model=ad, progress=False)
    with pytest.raises(UserError, match="not found"):
        build_costs(tmp_path / "nocalib", prof, tmp_path / "o", model=ad, progress=False)
    hessian_path(tmp_path / "calib", "fc2").unlink()
    with pytest.raises(UserError, match="no Hessian"):
        build_costs(tmp_path / "calib", prof, tmp_path / "o", model=ad, progress=False)
    assert not (tmp_path / "o").exists()                       # no partial artifact


@pytest.mark.parametrize("kind", ["llama", "opt"])
def test_cli_calibrate_and_costs_on_tiny_causal_lm(tmp_path, kind, capsys):
    folder = tiny_hf(kind, tmp_path / kind)
    (tmp_path / "t.txt").write_text(TEXT)
    prof = small_profile(tmp_path / "prof")
    main(["calibrate", "--model", str(folder), "--text", str(tmp_path / "t.txt"), "--sequences", "4", "--seq-len", "16",
          "--seed", "0", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "calib")])
    main(["costs", "--calib", str(tmp_path / "calib"), "--profile", str(prof), "--accelerator", "gpu_like", "--tile", "16",
          "--workload", "decode", "--no-progress", "--out", str(tmp_path / "costs")] + (["--save-scales"] if kind == "opt" else []))
    assert (tmp_path / "costs/scales.safetensors").is_file() == (kind == "opt")   # kept only when asked
    layers = pd.read_parquet(tmp_path / "costs/layers.parquet")
    errors = pd.read_parquet(tmp_path / "costs/errors.parquet")
    lat = pd.read_parquet(tmp_path / "costs/latency.parquet")
    assert len(layers) == (14 if kind == "llama" else 12) and (layers["tokens"] == 1).all()
    assert (errors[["full", "c3", "pow2", "c5"]] >= 0).all().all()
    freq = {l["name"]: l["freq_hz"] for l in json.loads((tmp_path / "costs/levels.json").read_text())["levels"]}
    m = lat.merge(layers, on="layer")
    t_c, t_m = m["cycles"] / m["level"].map(freq), m["bytes"] / 3350e9
    assert np.allclose(m["seconds"], np.maximum(t_c, t_m), rtol=1e-12) and (m["compute_bound"] == (t_c >= t_m)).all()
    assert (errors["full"] <= errors["c3"] + 1e-12).mean() > 0.9
    with pytest.raises(SystemExit) as e:
        main(["costs", "--calib", str(tmp_path / "calib"), "--profile", str(prof), "--tile", "0x3", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "c2")])
    assert e.value.code == 2 and "not found" in capsys.readouterr().err
