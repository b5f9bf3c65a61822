"""Number formats: every FP8 pattern against torch's own float8 dtypes, FP4 E2M1 against the
OCP MX table, integers as their own values."""

import numpy as np
import pytest
import torch

from halo_opt.errors import UserError
from halo_opt.formats import FORMATS, get_format


@pytest.mark.parametrize("name, dtype", [("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)])
def test_fp8_values_equal_torch_on_every_pattern(name, dtype):
    fmt = get_format(name)
    pats = torch.arange(256, dtype=torch.int16).to(torch.uint8)
    ref = pats.view(dtype).to(torch.float64).numpy()
    finite = np.isfinite(ref)
    assert np.array_equal(fmt.is_code(np.arange(256)), finite)          # NaN/Inf patterns excluded, nothing else
    assert np.array_equal(fmt.value(fmt.codes()), ref[finite])
    assert fmt.max_value == float(torch.finfo(dtype).max)


def test_fp4_e2m1_is_the_ocp_table():
    fmt = get_format("fp4_e2m1")
    mags = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert fmt.value(fmt.codes()).tolist() == mags + [-m for m in mags]
    assert fmt.describe_codes() == "16 bit patterns 0..15"


def test_int_codes_are_values_and_patterns_are_twos_complement():
    f = get_format("int8")
    assert f.codes()[[0, -1]].tolist() == [-128, 127]
    assert np.array_equal(f.value(f.codes()), f.codes().astype(float))
    assert f.bit_pattern([-1, -128, 5]).tolist() == [255, 128, 5]
    assert get_format("uint4").codes().tolist() == list(range(16))


def test_bad_names_and_codes_are_one_line_user_errors():
    with pytest.raises(UserError, match="unknown number format 'fp6'"):
        get_format("fp6")
    with pytest.raises(UserError, match="not finite codes of fp8_e4m3"):
        get_format("fp8_e4m3").value([0x7F])                             # NaN
    with pytest.raises(UserError, match="not finite codes of int4"):
        get_format("int4").value([8])
    assert all(f.name == n for n, f in FORMATS.items())
