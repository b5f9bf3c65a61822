"""Codebooks, DVFS law and MacProfile IO on synthetic profiles (no synthesis needed)."""


import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.hardware.codebooks import (Codebook, build_codebooks, fixed_size, gaussian_mse,
                                         load_codebooks, save_codebooks, threshold_family)
from halo_opt.hardware.dvfs import AlphaPowerLaw, load_dvfs, load_voltage_law
from halo_opt.hardware.profile import MacProfile


def synthetic_profile(seed=0, signed=True, bits=8):
    rng = np.random.default_rng(seed)
    codes = np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else np.arange(2**bits)
    pop = np.array([bin(int(c) & (2**bits - 1)).count("1") for c in codes])
    static = 400 + 35 * pop + rng.random(len(codes)) * 25
    return MacProfile(pd.DataFrame({"code": codes, "delay_static_ps": static,
                                    "delay_float_ps": static * rng.uniform(0.7, 1.0, len(codes)),
                                    "energy_fj": 80 + 9 * pop + rng.random(len(codes))}), {"v0": 1.0})


def test_profile_roundtrip_csv_parquet(tmp_path):
    p = synthetic_profile()
    p.save(tmp_path / "prof")
    q = MacProfile.load(tmp_path / "prof")
    pd.testing.assert_frame_equal(p.table, q.table)
    assert q.sha256() == p.sha256()
    r = MacProfile.load(tmp_path / "prof" / "profile.csv")
    np.testing.assert_allclose(r.delay("float"), p.delay("float"))


def test_profile_user_table_minimal_columns(tmp_path):
    f = tmp_path / "eda.csv"
    pd.DataFrame({"code": [0, 1, 2, 3], "delay_static_ps": [10.0, 20, 30, 40]}).to_csv(f, index=False)
    p = MacProfile.load(f)
    assert p.meta["filled"] == ["delay_float_ps", "energy_fj"]
    np.testing.assert_array_equal(p.delay("float"), p.delay("static"))


@pytest.mark.parametrize("df, msg", [
    (pd.DataFrame({"delay_static_ps": [1.0]}), "no 'code' column"),
    (pd.DataFrame({"code": [0]}), "needs a delay column"),
    (pd.DataFrame({"code": [0, 0], "delay_static_ps": [1.0, 2.0]}), "twice"),
    (pd.DataFrame({"code": [0, 1], "delay_static_ps": [1.0, -2.0]}), "negative"),
    (pd.DataFrame({"code": [0, 1], "delay_static_ps": [1.0, 2.0], "delay_float_ps": [1.0, 3.0]}), "exceeds the static"),
])
def test_profile_rejects_bad_tables(df, msg):
    with pytest.raises(UserError, match=msg):
        MacProfile(df, {})


def test_codebook_delay_is_max_energy_is_mean():
    p = synthetic_profile()
    cb = Codebook.from_codes("x", [0, 3, -5], p)
    idx = [int(np.where(p.codes == c)[0][0]) for c in (-5, 0, 3)]
    assert cb.codes == (-5, 0, 3)
    assert cb.delay_ps == pytest.approx(p.delay("static")[idx].max())
    assert cb.energy_fj == pytest.approx(p.energy[idx].mean())
    with pytest.raises(UserError, match="lacks code 0"):
        Codebook.from_codes("y", [1, 2], p)
    with pytest.raises(UserError, match="lacks"):
        Codebook.from_codes("y", [0, 999], p)


def test_threshold_family_is_nested_and_respects_tau():
    p = synthetic_profile(1)
    fam = threshold_family(p, 6)
    assert len(fam) >= 3
    d = dict(zip(p.codes.tolist(), p.delay("static")))
    for a, b in zip(fam, fam[1:]):
        assert set(a.codes) < set(b.codes) and a.delay_ps <= b.delay_ps
    for cb in fam:
        tau = cb.delay_ps
        expected = {c for c, v in d.items() if v <= tau} | {0}
        assert set(cb.codes) == expected


@pytest.mark.parametrize("k", [4, 8, 16])
@pytest.mark.parametrize("key", ["delay", "energy"])
def test_fixed_size_sets_are_usable_and_no_faster_usable_prefix(k, key):
    p = synthetic_profile(2)
    cb = fixed_size(p, k, key)
    assert cb is not None and cb.size == k and 0 in cb.codes
    limit = 1.5 * gaussian_mse(list(range(-(k // 2), k - k // 2)))
    assert gaussian_mse(cb.codes) <= limit
    assert len(set(np.sign(cb.codes))) == 3  # both signs kept: a usable signed range
    # never slower than the full grid; strictly faster for the delay family
    full = Codebook.from_codes("full", p.codes, p)
    if key == "delay":
        assert cb.delay_ps < full.delay_ps


def test_gaussian_mse_prefers_uniform_grid_over_clustered():
    assert gaussian_mse(range(-8, 8)) < gaussian_mse([-8, -7, -6, -5, 0, 5, 6, 7])
    assert gaussian_mse(range(-128, 128)) < gaussian_mse(range(-8, 8))


def test_build_codebooks_unique_and_roundtrip(tmp_path):
    p = synthetic_profile(3)
    books = build_codebooks(p)
    assert books[0].name == "full" and len(books[0].codes) == 256
    assert len({b.codes for b in books}) == len(books)
    assert {"int4", "fast8", "fast16"} <= {b.name for b in books}
    save_codebooks(tmp_path / "cb.json", books, {"profile": p.sha256()})
    assert load_codebooks(tmp_path / "cb.json") == books


def test_load_codebooks_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_codebooks(tmp_path / "bad.json")
    (tmp_path / "nozero.json").write_text('{"codebooks": [{"name": "a", "codes": [1, 2], "delay_ps": 1}]}')
    with pytest.raises(UserError, match="lacks code 0"):
        load_codebooks(tmp_path / "nozero.json")


# ---- DVFS -------------------------------------------------------------------------------

def test_alpha_power_law_reference_values():
    law = AlphaPowerLaw(v0=1.0, vt=0.35, alpha=1.3)
    assert law.delay_scale(1.0) == pytest.approx(1.0)
    v = 0.8
    assert law.delay_scale(v) == pytest.approx(0.8 * (0.65 / 0.45) ** 1.3)
    assert law.energy_scale(0.5) == pytest.approx(0.25)
    with pytest.raises(UserError, match="threshold"):
        law.delay_scale(0.3)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.4, 1.2), st.floats(0.4, 1.2))
def test_delay_scale_monotone_in_voltage(v1, v2):
    law = load_voltage_law("generic")
    if v1 < v2:
        assert law.delay_scale(v1) >= law.delay_scale(v2)
        assert law.leak_scale(v1) <= law.leak_scale(v2)


def test_dvfs_table_anchored_at_full_grid():
    law = load_voltage_law("generic")
    t = load_dvfs("tpu_like", full_delay_ps=1000.0, law=law)
    nom = t.level("nominal")
    assert nom.voltage_v == law.v0
    assert nom.period_ps == pytest.approx(1000.0 * (1 + t.margin))
    assert t.meets(1000.0, nom) and not t.meets(1000.1, nom)
    f15 = t.level("f1.50")
    assert t.meets(600.0, f15) and not t.meets(700.0, f15)
    v07 = t.level("v0.80")
    need = 1000.0 / law.delay_scale(v07.voltage_v)
    assert t.meets(need * 0.999, v07) and not t.meets(need * 1.001, v07)
    assert t.fastest_level(1000.0).name == "nominal"
    assert t.fastest_level(320.0).name == "f1.50"
    assert t.fastest_level(2000.0) is None


def test_dvfs_errors(tmp_path):
    law = load_voltage_law("generic")
    with pytest.raises(UserError, match="unknown DVFS table"):
        load_dvfs("nope", 1000.0, law)
    bad = tmp_path / "bad.toml"
    bad.write_text("margin = 0.1\n[[levels]]\nname = 'a'\n")
    with pytest.raises(UserError, match="lacks 'voltage_rel'"):
        load_dvfs(bad, 1000.0, law)
    with pytest.raises(UserError, match="unknown voltage law"):
        load_voltage_law("nope")
    with pytest.raises(UserError, match="unknown DVFS level"):
        load_dvfs("tpu_like", 1000.0, law).level("warp9")
