"""Accelerator models: per-fold latency against the layer roofline, the clock anchor, named workloads."""

from __future__ import annotations

import math

import pytest

from halo_opt.accelerators import WORKLOADS, LayerShape, load_accelerator, workload
from halo_opt.errors import UserError
from halo_opt.hardware.dvfs import DvfsLevel, load_dvfs, load_voltage_law
from halo_opt.costs import tile_grid


@pytest.mark.parametrize("M", [1, 128, 8192])
@pytest.mark.parametrize("shape", [(384, 384), (384, 1536), (1536, 384), (100, 700)])
def test_folds_sum_to_the_layer_roofline_when_compute_bound(M, shape):
    acc = load_accelerator("tpu_like")
    K, N = shape
    layer = LayerShape("l", K, N, M)
    for f in (185e6, 700e6, 1.8e9):
        lv = DvfsLevel("x", 1.0, f)
        t_layer, cb_layer = acc.latency(layer, lv)
        folds = [acc.fold_latency(layer, r1 - r0, c1 - c0, lv) for r0, r1, c0, c1 in tile_grid(N, K, acc.fold_tile())]
        assert len(folds) == acc.folds(layer)
        total = sum(t for t, _ in folds)
        assert total >= t_layer * (1 - 1e-12)  # per-fold roofline never beats the layer one
        if all(cb for _, cb in folds):
            assert cb_layer and total == pytest.approx(t_layer, rel=1e-12)
        # the bytes are split, not invented: at an infinite clock the folds add up to the layer's traffic
        fast = [acc.fold_latency(layer, r1 - r0, c1 - c0, DvfsLevel("inf", 1.0, 1e30))[0] for r0, r1, c0, c1 in tile_grid(N, K, acc.fold_tile())]
        assert sum(fast) == pytest.approx(acc.bytes(layer) / acc.bandwidth_Bps, rel=1e-9)


def test_clock_anchor_keeps_ratios_and_sets_the_nominal_clock():
    law = load_voltage_law("generic")
    for d_full in (5000.0, 520.0):  # built-in gates (~185 MHz) and HALO's table (~1.8 GHz)
        char = load_dvfs("tpu_like", d_full, law)
        nom = load_dvfs("tpu_like", d_full, law, 700e6)
        assert nom.level("nominal").freq_hz == pytest.approx(700e6) and nom.anchor == "nominal"
        assert char.level("nominal").freq_hz == pytest.approx(1e12 / (d_full * (1 + char.margin)))
        for r in (1.0, 0.97, 0.9, 0.8, 0.6, 0.5):  # a codebook at r × the full grid's delay
            for a, b in zip(char.levels, nom.levels):
                assert char.meets(r * d_full, a) == nom.meets(r * d_full, b)
        assert nom.meets(d_full, nom.level("nominal")) and not nom.meets(d_full, nom.level("f1.05"))


def test_accelerator_anchor_config(tmp_path):
    assert load_accelerator("tpu_like").anchor_hz == 700e6 and load_accelerator("gpu_like").anchor_hz == 1830e6
    base = (tmp_path / "a.toml")
    base.write_text('kind = "systolic"\nrows = 4\ncols = 4\nbandwidth_gbps = 1\n')
    assert load_accelerator(base).anchor == "characterised" and load_accelerator(base).anchor_hz is None
    base.write_text('kind = "systolic"\nrows = 4\ncols = 4\nbandwidth_gbps = 1\nanchor = "nominal"\n')
    with pytest.raises(UserError, match="needs nominal_freq_hz"):
        load_accelerator(base)
    base.write_text('kind = "systolic"\nrows = 4\ncols = 4\nbandwidth_gbps = 1\nanchor = "fast"\n')
    with pytest.raises(UserError, match="use 'nominal' or 'characterised'"):
        load_accelerator(base)


def test_named_workloads():
    assert workload("prefill-b64").tokens == 64 * 128 and workload("prefill-b1").tokens == 128
    assert workload("prefill-b1", batch=2).batch == 2 and workload("decode", batch=8).tokens == 8
    assert set(WORKLOADS) >= {"prefill-b1", "prefill-b64"} and workload("prefill-b64").name == "prefill-b64-s128"
    with pytest.raises(UserError, match="unknown workload"):
        workload("training")
    acc = load_accelerator("tpu_like")  # prefill-b64 is compute-bound in every MiniLM-sized layer at the nominal clock
    assert all(acc.latency(LayerShape("l", k, n, 8192), DvfsLevel("n", 1.0, 700e6))[1] for k, n in ((384, 384), (384, 1536)))
    assert not math.isnan(acc.bandwidth_Bps)
