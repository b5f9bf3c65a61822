"""Energy breakdown in MacProfile and characterize: optional columns, old profiles, voltage law."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from halo_opt.errors import UserError
from halo_opt.hardware.dvfs import voltage_law_for
from halo_opt.hardware.profile import COLUMNS, MacProfile

from shared_files import SG13G2  # noqa: E402  (beside the clone: REPO/../shared)


def _table(extra: bool) -> pd.DataFrame:
    codes = np.arange(-2, 2)
    df = pd.DataFrame({"code": codes, "delay_static_ps": [5.0, 4, 1, 3], "delay_float_ps": [4.0, 4, 1, 2], "energy_fj": [9.0, 7, 1, 5]})
    if extra:
        df["energy_switch_fj"] = [5.0, 4, 1, 3]
        df["energy_internal_fj"] = [4.0, 3, 0, 2]
        df["leakage_nw"] = [1.5, 1.25, 1.0, 1.75]
    return df


def test_breakdown_columns_roundtrip_and_old_profiles_load(tmp_path):
    p = MacProfile(_table(True), {"v0": 1.2})
    p.save(tmp_path / "new")
    q = MacProfile.load(tmp_path / "new")
    pd.testing.assert_frame_equal(q.table, p.table)
    assert q.sha256() == p.sha256()
    old = MacProfile(_table(False), {"v0": 1.8})  # a profile written before the breakdown existed
    old.save(tmp_path / "old")
    o = MacProfile.load(tmp_path / "old")
    assert list(o.table.columns) == list(COLUMNS) and o.sha256() == old.sha256()
    bad = _table(True)
    bad.loc[0, "leakage_nw"] = np.nan
    with pytest.raises(UserError, match="leakage_nw"):
        MacProfile(bad, {})


def test_voltage_law_for_library_supply():
    assert voltage_law_for(1.8, "generic").name == "sky130"
    assert voltage_law_for(1.0, "generic").name == "generic"
    assert voltage_law_for(1.2, "generic").name == "sg13g2"
    assert voltage_law_for(0.7, "finfet7").name == "asap7"
    with pytest.raises(UserError, match="no voltage law"):
        voltage_law_for(3.3)


@pytest.mark.skipif(not SG13G2.is_file(), reason="SG13G2 Liberty not available (../shared/liberty)")
def test_characterize_records_library_voltage_and_breakdown():
    from halo_opt.hardware.characterize import CharacterizeConfig, characterize
    from halo_opt.hardware.verilog import MacSpec

    cfg = CharacterizeConfig(spec=MacSpec(4, 4, True, 8, "array"), liberty=SG13G2, n_psums=2, n_energy=200)
    prof, _, _ = characterize(cfg)
    m, t = prof.meta, prof.table
    assert (m["v0"], m["voltage_source"], m["voltage_law"]) == (pytest.approx(1.2), "nom_voltage", "sg13g2")
    np.testing.assert_allclose(t["energy_fj"], t["energy_switch_fj"] + t["energy_internal_fj"])
    assert (t["energy_internal_fj"] > 0).all() and (t["leakage_nw"] > 0).all()
    assert m["leakage_w"] == pytest.approx(t["leakage_nw"].mean() * 1e-9)
    with pytest.raises(UserError, match="supply is 1.2 V"):
        characterize(CharacterizeConfig(spec=cfg.spec, liberty=SG13G2, n_psums=2, n_energy=200, voltage_law="sky130"))
