"""A user's per-code clock table as a MAC profile: clock -> delay, codebooks, comparison, planning.
The published HALO table is read from ``../shared/anchors`` (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from halo_opt.errors import UserError
from halo_opt.hardware.codebooks import build_codebooks, save_codebooks
from halo_opt.hardware.profile import MacProfile, compare_profiles, delay_from_clock, fastest_codes

REPO = Path(__file__).resolve().parents[1]
SHARED = next((d for d in (REPO.parent / "shared", Path("/work/shared")) if d.is_dir()), REPO.parent / "shared")  # beside the clone; dev-box fallback
HALO = SHARED / "anchors/halo_per_code.csv"
needs_halo = pytest.mark.skipif(not HALO.is_file(), reason="../shared/anchors/halo_per_code.csv not present")


def test_delay_from_clock_units_and_errors():
    assert delay_from_clock([2.0, 4.0]).tolist() == [500.0, 250.0]
    assert delay_from_clock([500.0], 1e6).tolist() == [2000.0]
    with pytest.raises(UserError, match="positive"):
        delay_from_clock([1.0, 0.0])


def test_clock_table_loads_as_profile(tmp_path):
    codes = np.arange(-8, 8)
    f = 2.0 + 0.1 * (codes % 4 == 0)  # multiples of 4 are faster
    p = tmp_path / "t.csv"
    pd.DataFrame({"code": codes, "fmax_mhz": f * 1000, "note": "x"}).to_csv(p, index=False)
    prof = MacProfile.load(p)
    assert np.allclose(prof.delay("static"), 1e6 / (f * 1000)) and np.allclose(prof.delay("float"), prof.delay("static"))
    assert "fmax_mhz" in prof.meta["converted"] and set(prof.meta["filled"]) == {"delay_float_ps", "energy_fj"}
    assert fastest_codes(prof, 4) == {-8, -4, 0, 4}
    books = build_codebooks(prof)
    assert not any(b.family == "k-energy" for b in books)  # no energies: no frugal sets
    with pytest.raises(UserError, match="clock column"):
        MacProfile(pd.DataFrame({"code": [0, 1], "speed": [1.0, 2.0]}))


def test_compare_profiles_rank_and_overlap():
    codes = np.arange(-8, 8)
    d = 100.0 + np.abs(codes)
    a = MacProfile(pd.DataFrame({"code": codes, "delay_static_ps": d}))
    b = MacProfile(pd.DataFrame({"code": codes[1:], "delay_static_ps": 2 * d[1:] + 7}))  # same ranks, one code fewer
    c = compare_profiles(a, b, ns=(3,))
    assert c["codes"] == 15 and c["spearman"] == pytest.approx(1.0) and c["overlap_3"] == 3
    rev = MacProfile(pd.DataFrame({"code": codes, "delay_static_ps": 200.0 - np.abs(codes)}))
    assert compare_profiles(a, rev)["spearman"] < -0.9
    # a registered design is compared by its weight-dependent stage, not its flat cycle
    reg = MacProfile(pd.DataFrame({"code": codes, "delay_static_ps": np.full(16, 300.0), "stage_static_ps": d}))
    assert compare_profiles(reg, a)["spearman"] == pytest.approx(1.0)


@needs_halo
def test_halo_table_profile_and_codebooks():
    prof = MacProfile.load(HALO)
    assert prof.codes.tolist() == list(range(-127, 129))  # the published order: -127 .. 128
    raw = pd.read_csv(HALO)
    assert np.allclose(prof.delay("static"), 1e3 / raw.sort_values("code")["max_freq_ghz"].to_numpy())
    assert prof.spread() == pytest.approx(raw["max_freq_ghz"].max() / raw[raw["code"] != 0]["max_freq_ghz"].min(), rel=1e-9)
    assert fastest_codes(prof, 8) == {0, 32, -32, 64, -64, 96, -96, 128}
    by = {b.name: b for b in build_codebooks(prof)}
    assert by["full"].delay_ps == pytest.approx(1e3 / raw["max_freq_ghz"].min())
    assert set(by["fast8"].codes) == {0, 32, -32, 64, -64, 96, -96, 128} and by["fast8"].delay_ps < 0.55 * by["full"].delay_ps


@needs_halo
def test_plan_with_halo_table(tmp_path):
    """HALO's table as a profile folder -> cost tables on a tiny calibrated model -> performance plan:
    the plan is feasible and runs some tiles on a fast codebook above the nominal clock."""
    import torch
    from calib_helpers import TEXT, TwoLayer, two_layer_forward  # noqa: F401

    from halo_opt.accelerators import Workload
    from halo_opt.calibration import TokenBatch, calibrate, from_module
    from halo_opt.costs import build_costs
    from halo_opt.paths import formulations_dir
    from halo_opt.solve import get_solver
    from halo_opt.solve.build import build_problem
    from halo_opt.solve.problem import evaluate
    from halo_opt.solve.scenario import load_scenario

    prof = MacProfile.load(HALO)
    prof.meta["v0"] = 1.0
    prof.save(tmp_path / "halo")
    save_codebooks(tmp_path / "halo" / "codebooks.json", build_codebooks(prof))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (8, 6), generator=g)
    ad = from_module(TwoLayer(), two_layer_forward)
    calibrate(ad, TokenBatch(ids, torch.ones_like(ids), {"seed": 0}), tmp_path / "calib", batch_size=4, progress=False)
    costs = build_costs(tmp_path / "calib", tmp_path / "halo", tmp_path / "costs", "tpu_like", (3, 4), Workload("prefill", 1, 16),
                        model=ad, progress=False)
    p = build_problem(costs, load_scenario(formulations_dir() / "performance.toml").with_overrides(budget=float("inf")))
    r = get_solver("cpsat")(p, time_limit=10)
    assert r.has_plan
    base = build_problem(costs, load_scenario(formulations_dir() / "baseline_int8.toml"))
    rb = get_solver("cpsat")(base, time_limit=10)
    assert evaluate(p, r.assignment).latency < evaluate(base, rb.assignment).latency
