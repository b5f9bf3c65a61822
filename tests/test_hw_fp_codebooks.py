"""Profiles and codebooks over floating-point weight codes (synthetic profiles, no synthesis)."""

import json

import numpy as np
import pandas as pd
import pytest

from halo_opt.errors import UserError
from halo_opt.formats import get_format
from halo_opt.hardware.codebooks import (Codebook, build_codebooks, codebooks_format, fixed_size, gaussian_mse,
                                         load_codebooks, save_codebooks, value_grid)
from halo_opt.hardware.profile import MacProfile


def fp_profile(name="fp4_e2m1", seed=0):
    """Delay grows with the mantissa's ones and the exponent (a made-up FP MAC)."""
    f = get_format(name)
    c = f.codes()
    m, e = c & ((1 << f.mbits) - 1), (c >> f.mbits) & ((1 << f.ebits) - 1)
    rng = np.random.default_rng(seed)
    d = 300 + 40 * np.array([bin(int(x)).count("1") for x in m]) + 5 * e + rng.random(c.size)
    return MacProfile(pd.DataFrame({"code": c, "delay_static_ps": d, "energy_fj": 50 + 3 * m + e + rng.random(c.size)}), {"format": name})


def test_value_column_from_format_and_roundtrip(tmp_path):
    p = fp_profile("fp8_e4m3")
    f = get_format("fp8_e4m3")
    np.testing.assert_array_equal(p.values, f.value(p.codes))
    assert p.format is f and 0x7F not in p.codes and len(p.codes) == 254
    p.save(tmp_path / "p")
    assert "value" in pd.read_csv(tmp_path / "p" / "profile.csv").columns
    q = MacProfile.load(tmp_path / "p")
    pd.testing.assert_frame_equal(p.table, q.table)
    assert q.sha256() == p.sha256()


def test_integer_profile_files_have_no_value_column(tmp_path):
    p = MacProfile(pd.DataFrame({"code": np.arange(-8, 8), "delay_static_ps": np.arange(16.0) + 1}), {"wbits": 4, "signed": True})
    np.testing.assert_array_equal(p.values, p.codes)
    p.save(tmp_path / "p")
    assert "value" not in pd.read_csv(tmp_path / "p" / "profile.csv").columns
    assert MacProfile.load(tmp_path / "p").sha256() == p.sha256()


def test_profile_rejects_non_codes_and_wrong_values():
    with pytest.raises(UserError, match="not a finite code of fp8_e4m3"):
        MacProfile(pd.DataFrame({"code": [0, 0x7F], "delay_static_ps": [1.0, 2.0]}), {"format": "fp8_e4m3"})
    with pytest.raises(UserError, match="has value"):
        MacProfile(pd.DataFrame({"code": [0, 1], "value": [0.0, 1.0], "delay_static_ps": [1.0, 2.0]}), {"format": "fp4_e2m1"})


def test_spread_ignores_both_zeros():
    p = fp_profile()
    d = p.delay()
    nz = ~np.isin(p.codes, [0, 8])  # +0 and -0
    assert p.spread() == pytest.approx(d[nz].max() / d[nz].min())


def test_codebooks_carry_values_and_roundtrip(tmp_path):
    p = fp_profile()
    books = build_codebooks(p)
    f = get_format("fp4_e2m1")
    for b in books:
        np.testing.assert_array_equal(b.values, f.value(np.array(b.codes)))
        assert 0.0 in b.values
    save_codebooks(tmp_path / "cb.json", books, {"format": "fp4_e2m1"})
    assert codebooks_format(tmp_path / "cb.json") == "fp4_e2m1"
    assert load_codebooks(tmp_path / "cb.json") == books
    raw = json.loads((tmp_path / "cb.json").read_text())
    raw["codebooks"][0]["values"][1] = 99.0
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="not those of its fp4_e2m1 codes"):
        load_codebooks(tmp_path / "bad.json")


def test_fixed_size_fp_sets_are_usable_by_value():
    p = fp_profile("fp8_e4m3")
    for k in (8, 16):
        cb = fixed_size(p, k, "delay")
        assert cb is not None and len(set(cb.values)) == k
        assert gaussian_mse(cb.values, wide=True) <= 1.5 * gaussian_mse(list(range(-(k // 2), k - k // 2)))
        # nothing faster among the distinct values beats its delay by more than its own set allows
        assert cb.delay_ps <= p.delay().max()


def test_wide_scale_search_is_never_worse():
    for vals in ([0, 1, 2, 448], list(get_format("fp8_e4m3").value(get_format("fp8_e4m3").codes())), range(-8, 8)):
        assert gaussian_mse(vals, wide=True) <= gaussian_mse(vals) * (1 + 1e-10)


def test_subformat_grids_inside_fp8():
    p = fp_profile("fp8_e4m3")
    names = [b.name for b in build_codebooks(p, ks=())]
    assert "int4" in names and "fp4_e2m1" in names
    e2m1 = get_format("fp4_e2m1")
    g = value_grid(p, "fp4", e2m1.value(e2m1.codes()))
    assert sorted(set(g.values)) == sorted(set(e2m1.value(e2m1.codes())))
    with pytest.raises(UserError, match="needs value"):
        value_grid(p, "odd", [0, 0.3])


def test_codebook_without_zero_value_is_rejected():
    p = fp_profile()
    with pytest.raises(UserError, match="value 0"):
        Codebook.from_codes("x", [1, 2], p)


def test_binned_mse_equals_the_direct_one():
    from halo_opt.hardware.codebooks import _gauss_points, _mse_at, _mse_binned

    x, rng = _gauss_points(), np.random.default_rng(1)
    vals = np.unique(get_format("fp8_e4m3").value(get_format("fp8_e4m3").codes()))
    for _ in range(60):
        c = np.unique(rng.choice(vals, size=int(rng.integers(2, 40))))
        s = np.geomspace(0.4 / np.abs(c).max(), 4.5 / np.abs(c[c != 0]).min(), 40)
        (a, sa), (b, sb) = _mse_at(c, x, s), _mse_binned(c, x, s)
        assert b == pytest.approx(a, rel=1e-10)
