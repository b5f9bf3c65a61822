"""`characterize` on Liberty libraries: floating-mode <= static on the raw values of every code
(no clipping), the static column is the default case-analysis timing, and several Liberty
files (ASAP7's four) pass through the API and the repeatable CLI option ``--liberty``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from halo_opt.hardware.characterize import CharacterizeConfig, characterize
from halo_opt.hardware.delay import LibertyDelay
from halo_opt.hardware.liberty import read_liberty
from halo_opt.hardware.timing import static_timing
from halo_opt.hardware.verilog import MacSpec


from shared_files import ASAP7, SG13G2  # noqa: E402  (beside the clone: REPO/../shared)


@pytest.mark.skipif(not SG13G2.is_file(), reason="SG13G2 Liberty not available")
@pytest.mark.parametrize("arch", ["array", "booth"])
def test_raw_floating_never_above_static(arch):
    spec = MacSpec(6, 6, True, 14, arch)
    prof, _, net = characterize(CharacterizeConfig(spec, SG13G2, n_psums=16, n_energy=64))
    s, f = prof.delay("static"), prof.delay("float")
    np.testing.assert_allclose(s, static_timing(net, LibertyDelay(read_liberty(SG13G2)), prof.codes).delay_ps)
    assert (f <= s).all() and (f < s - 1.0).any()  # raw values: characterize no longer clips
    assert prof.meta["liberty_sha256"] and prof.meta["library"] == "sg13g2_stdcell_typ_1p20V_25C"


@pytest.mark.skipif(len(ASAP7) != 4, reason="ASAP7 Liberty files not available")
def test_cli_takes_several_liberty_files(tmp_path, capsys):
    from halo_opt.cli import main
    from halo_opt.hardware.profile import MacProfile

    args = ["characterize", "--wbits", "4", "--abits", "4", "--acc", "10", "--psums", "4", "--energy-vectors", "64",
            "--out", str(tmp_path / "out")]
    for p in ASAP7:
        args += ["--liberty", str(p)]
    with pytest.raises(SystemExit) as e:
        main(args)
        raise SystemExit(0)
    assert e.value.code == 0, capsys.readouterr().err
    prof = MacProfile.load(tmp_path / "out")
    assert prof.meta["library"].count("+") == 3 and len(prof.meta["liberty_sha256"]) == 4
    assert (prof.delay("float") <= prof.delay("static")).all() and prof.delay("static").max() > 0
