"""Floating-point MACs: spec, Verilog, exhaustive check against the bit-exact format model,
mutations the check must catch, and an end-to-end FP4 characterization (built-in gates)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.formats import get_format
from halo_opt.hardware.characterize import CharacterizeConfig, characterize, write_characterization
from halo_opt.hardware.check import act_codes, exact_products, functional_check, weight_codes
from halo_opt.hardware.codebooks import codebooks_format, load_codebooks
from halo_opt.hardware.netlist import Cell
from halo_opt.hardware.profile import MacProfile
from halo_opt.hardware.simulate import simulate
from halo_opt.hardware.verilog import ARCHS, MacSpec, mac_spec, mac_verilog
from halo_opt.hardware.yosys import synthesize_mac

FP4 = mac_spec(wformat="fp4_e2m1")  # FP4 E2M1 weights x FP8 E4M3 activations


def fields_model(spec: MacSpec, a, w):
    """A second reference, from the fields (not from formats.value): ±(sig_a·sig_w) << (sh_a + sh_w)."""
    out, sign, sh = 1, 0, 0
    for code, f in ((np.asarray(a, np.int64), spec.afmt), (np.asarray(w, np.int64), spec.wfmt)):
        s, e, m = code >> (f.bits - 1) & 1, code >> f.mbits & ((1 << f.ebits) - 1), code & ((1 << f.mbits) - 1)
        out = out * (np.where(e != 0, 1 << f.mbits, 0) + m)
        sh = sh + np.maximum(e, 1) - 1
        sign = sign ^ s
    return np.where(sign == 1, -(out << sh), out << sh)


def test_spec_defaults_names_and_errors():
    assert FP4 == MacSpec(4, 8, True, 31, "array", wformat="fp4_e2m1", aformat="fp8_e4m3")
    assert FP4.mbits == 23 and FP4.fp_layout()["lsb"] == -10
    e4 = mac_spec(wformat="fp8_e4m3")
    assert (e4.mbits, e4.acc, e4.fp_layout()["lsb"], e4.name) == (37, 45, -18, "mac_fp8e4m3xfp8e4m3_acc45_array")
    assert mac_spec(wformat="int8") == MacSpec() and "wformat" not in MacSpec().to_dict()
    assert MacSpec.from_dict(e4.to_dict()) == e4
    for kw, msg in [(dict(wformat="fp4_e2m1"), "disagrees with fp4_e2m1"),
                    (dict(wbits=4, wformat="fp4_e2m1", aformat="int8"), "floating-point activations"),
                    (dict(aformat="fp8_e4m3"), "needs floating-point weights"),
                    (dict(wbits=4, acc=20, wformat="fp4_e2m1"), "out of range 23..62"),
                    (dict(wformat="fp9"), "unknown number format")]:
        with pytest.raises(UserError, match=msg):
            MacSpec(**kw)


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "fp4_e2m1"])
def test_exact_products_match_the_field_model_and_values(name):
    spec = mac_spec(wformat=name)
    A, W = act_codes(spec), weight_codes(spec)
    P = exact_products(spec, A[:, None], W[None, :])
    Ag, Wg = np.meshgrid(A, W, indexing="ij")
    np.testing.assert_array_equal(P, fields_model(spec, Ag, Wg))  # every pair
    val = spec.afmt.value(A)[:, None] * spec.wfmt.value(W)[None, :]
    np.testing.assert_array_equal(np.ldexp(P.astype(np.float64), spec.fp_layout()["lsb"]), val)
    assert np.abs(P).max() < 2 ** (spec.mbits - 1)  # fits m without truncation
    assert 0x7F not in A and (name != "fp8_e4m3" or 0xFF not in W)  # NaN excluded


def test_verilog_ports_are_patterns_and_accumulator_is_signed():
    text = mac_verilog(mac_spec(wformat="fp8_e4m3"))
    assert "input  wire [7:0] a" in text and "input  wire [7:0] w" in text and "input  wire signed [44:0] p" in text
    assert "sigx << sh" in text and "(sa ^ sw) ?" in text


@pytest.mark.parametrize("arch", ARCHS)
def test_fp4_designs_pass_the_exhaustive_check(arch):
    spec = replace(FP4, arch=arch)
    net = synthesize_mac(spec)  # checked inside
    assert functional_check(net, spec) == 254 * 16 * 64


@pytest.mark.parametrize("pipeline,accumulate", [("registered", "cpa"), ("combinational", "csa"), ("registered", "csa")])
def test_fp4_pipelined_and_carry_save_stages_pass(pipeline, accumulate):
    spec = replace(FP4, pipeline=pipeline, accumulate=accumulate)
    for st in spec.stages:
        assert functional_check(synthesize_mac(spec, stage=st), spec, stage=st) > 0


@pytest.mark.parametrize("pick", range(6))
def test_one_altered_gate_fails_the_fp_check(pick):
    net = synthesize_mac(FP4)
    swap = {"$_AND_": "$_OR_", "$_OR_": "$_AND_", "$_XOR_": "$_XNOR_", "$_XNOR_": "$_XOR_", "$_NAND_": "$_NOR_", "$_NOR_": "$_NAND_"}
    cand = [i for i, g in enumerate(net.gates) if g.cell in swap]
    i = cand[pick * len(cand) // 6]
    new = swap[net.gates[i].cell]
    from halo_opt.hardware.netlist import YOSYS_CELLS

    bad = replace(net, gates=[replace(g, cell=new) if k == i else g for k, g in enumerate(net.gates)],
                  cells={**net.cells, new: net.cells.get(new) or YOSYS_CELLS.get(new) or Cell(new, ("A", "B"), "Y", "A | B")})
    with pytest.raises(UserError, match=r"netlist fails y = p \+ a\*w at a=\d+ w=\d+ p=-?\d+: expected -?\d+, got -?\d+") as e:
        functional_check(bad, FP4)
    a, w, p, exp, got = map(int, re.search(r"a=(\d+) w=(\d+) p=(-?\d+): expected (-?\d+), got (-?\d+)", str(e.value)).groups())
    half = 2 ** (FP4.acc - 1)
    assert exp == (p + int(fields_model(FP4, a, w)) + half) % 2**FP4.acc - half  # the reported vector is real
    assert simulate(bad, {"a": [a], "w": [w], "p": [p]}, signed=True)["y"][0] == got != exp


def test_check_rejects_an_integer_netlist_for_an_fp_spec():
    net = synthesize_mac(MacSpec(4, 8, True, 31, "array"))  # same port widths, integer product
    with pytest.raises(UserError, match="netlist fails"):
        functional_check(net, FP4)


def test_fp4_characterize_end_to_end(tmp_path):
    prof, books, _ = characterize(CharacterizeConfig(FP4, n_psums=8, n_energy=256))
    f = get_format("fp4_e2m1")
    assert prof.meta["format"] == "fp4_e2m1" and prof.meta["activation_format"] == "fp8_e4m3"
    np.testing.assert_array_equal(prof.codes, f.codes())
    np.testing.assert_array_equal(prof.values, f.value(f.codes()))
    s, fl = prof.delay("static"), prof.delay("float")
    assert (fl <= s + 1e-9).all()
    assert s[0] == s[8] and s[0] < s[prof.values != 0].min()  # ±0: no partial product
    np.testing.assert_allclose(s[1:8], s[9:16])  # the sign only selects the negation: same static delay
    out = write_characterization(tmp_path / "fp4", prof, books)
    assert codebooks_format(out / "codebooks.json") == "fp4_e2m1"
    back = load_codebooks(out / "codebooks.json")
    assert back == books and all(0.0 in b.values for b in back)
    assert MacProfile.load(out).sha256() == prof.sha256()


def test_cli_characterize_fp4_and_bad_format(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run([sys.executable, "-m", "halo_opt", "characterize", "--wformat", "fp4_e2m1", "--psums", "4",
                        "--energy-vectors", "64", "--out", str(tmp_path / "fp4")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    prof = MacProfile.load(tmp_path / "fp4")
    assert prof.meta["design"] == "mac_fp4e2m1xfp8e4m3_acc31_array" and (tmp_path / "fp4" / "profile.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "halo_opt", "characterize", "--wformat", "fp7", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown number format 'fp7'" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("w,a,arch", [("fp8_e4m3", None, "array"), ("fp8_e4m3", None, "booth"),
                                      ("fp8_e5m2", None, "array"), ("fp4_e2m1", "fp4_e2m1", "array")])
def test_fp8_and_other_pairs_pass_the_exhaustive_check(w, a, arch):
    spec = mac_spec(wformat=w, aformat=a, arch=arch)
    n = functional_check(synthesize_mac(spec), spec)
    assert n == spec.afmt.codes().size * spec.wfmt.codes().size * min(64, 2**spec.acc)


def test_fp4_registered_profile_times_the_stages_apart():
    spec = replace(FP4, pipeline="registered")
    prof, _, _ = characterize(CharacterizeConfig(spec, n_psums=4, n_energy=64))
    st = prof.meta["stages"]
    assert set(st) == {"mul", "acc"} and st["mul"]["weight_dependent"] and not st["acc"]["weight_dependent"]
    np.testing.assert_allclose(prof.delay("static"), np.maximum(prof.table["stage_static_ps"], st["acc"]["static_ps"]))
    nz = prof.values != 0
    assert prof.table["stage_static_ps"][nz].max() / prof.table["stage_static_ps"][nz].min() > 1.0  # the FP multiplier stage varies


@pytest.mark.slow
def test_fp4_sky130_static_delay_equals_opensta():
    from shared_files import SKY130

    from halo_opt.hardware.delay import LibertyDelay
    from halo_opt.hardware.liberty import read_liberty
    from halo_opt.hardware.opensta import opensta_static_delays, sta_path, weight_cases
    from halo_opt.hardware.timing import static_timing

    if sta_path() is None or not SKY130.is_file():
        pytest.skip("OpenSTA or the sky130 Liberty file not available")
    net = synthesize_mac(FP4, liberty=SKY130)
    codes = weight_codes(FP4)
    ref = np.array(opensta_static_delays(net.meta["verilog_path"], SKY130, weight_cases(codes, 4)))
    ours = static_timing(net, LibertyDelay(read_liberty(SKY130)), codes).delay_ps
    assert ref.max() / ref[1:].min() > 1.02 and np.abs(ours - ref).max() / ref.min() <= 1e-3
