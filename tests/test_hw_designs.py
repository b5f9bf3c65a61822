"""PE design space: stage Verilog, tree multipliers, exhaustive checks of every design option,
mutations the checks must catch, registered/carry-save timing semantics."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.hardware.characterize import CharacterizeConfig, characterize, product_sample, timing_view
from halo_opt.hardware.check import code_range, functional_check
from halo_opt.hardware.delay import BuiltinDelay
from halo_opt.hardware.dvfs import load_dvfs, load_voltage_law
from halo_opt.hardware.netlist import Gate
from halo_opt.hardware.simulate import simulate
from halo_opt.hardware.timing import static_timing
from halo_opt.hardware.verilog import ARCHS, MacSpec, dadda_heights, mac_verilog, tree_multiplier_verilog
from halo_opt.hardware.yosys import synthesize_mac

DESIGNS = [("combinational", "cpa"), ("combinational", "csa"), ("registered", "cpa"), ("registered", "csa")]


def test_spec_names_fields_and_errors():
    s = MacSpec(8, 8, True, 24, "wallace", "registered", "csa")
    assert s.name == "mac_s8x8_acc24_wallace_reg_csa" and s.stages == ("mul", "acc", "resolve")
    assert MacSpec().name == "mac_s8x8_acc24_array" and MacSpec().stages == ("mac",)  # default design unchanged
    assert MacSpec.from_dict(s.to_dict()) == s and MacSpec.from_dict({"wbits": 4}).pipeline == "combinational"
    assert s.stage_ports("acc") == ({"m": 16, "ps": 24, "pc": 24}, {"ys": 24, "yc": 24})
    for bad, word in [(dict(arch="tree"), "--arch"), (dict(pipeline="pipelined"), "--pipeline"),
                      (dict(accumulate="rca"), "--accumulate"), (dict(accumulate="csa", acc=40), "carry-save")]:
        with pytest.raises(UserError, match=word):
            MacSpec(**bad)
    with pytest.raises(UserError, match="no stage"):
        MacSpec().stage_ports("mul")


def test_dadda_heights():
    assert dadda_heights(8) == [6, 4, 3, 2] and dadda_heights(4) == [3, 2] and dadda_heights(3) == [2]


def _eval_tree(abits, wbits, signed, kind):
    """Evaluate the generated mul_tree Verilog with Python integer bit semantics (an oracle
    independent of Yosys): every assign and adder instance in order."""
    text = tree_multiplier_verilog(abits, wbits, signed, kind)
    body = text.split("module mul_tree")[1].split("endmodule")[0]
    A, W = np.meshgrid(code_range(abits, signed), code_range(wbits, signed), indexing="ij")
    A, W = A.ravel(), W.ravel()
    env = {"1'b1": np.ones_like(A), "1'b0": np.zeros_like(A)}
    bit = lambda v, i: (v >> i) & 1
    val = lambda e: env[e] if e in env else (bit(A, int(e[2:-1])) if e.startswith("a[") else bit(W, int(e[2:-1])))
    for line in body.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"wire (pp\d+_\d+) = (~?)\((a\[\d+\]) & (w\[\d+\])\);", line):
            env[m[1]] = (val(m[3]) & val(m[4])) ^ (1 if m[2] else 0)
        elif m := re.fullmatch(r"(fa|fa1|ha) u\d+ \((.*)\);", line):
            pins = dict(re.findall(r"\.(\w)\((\w+|1'b[01])\)", m[2]))
            x, y = env[pins["x"]], env[pins["y"]]
            z = env[pins["z"]] if m[1] == "fa" else (np.ones_like(A) if m[1] == "fa1" else np.zeros_like(A))
            env[pins["s"]], env[pins["c"]] = x ^ y ^ z, (x & y) | (z & (x ^ y))
        elif m := re.fullmatch(r"assign (s\d+|c\d+) = (~?)(\w+);", line):
            env[m[1]] = env[m[3]] ^ (1 if m[2] else 0)
        elif m := re.fullmatch(r"assign m = \{(.*)\} \+ \{(.*)\};", line):
            rows = [sum(env[b.strip()] << i for i, b in enumerate(reversed(r.split(",")))) for r in (m[1], m[2])]
            return A, W, (rows[0] + rows[1]) & ((1 << (abits + wbits)) - 1), text
    raise AssertionError("no final adder")


@pytest.mark.parametrize("kind", ["wallace", "dadda"])
@pytest.mark.parametrize("abits,wbits,signed", [(4, 4, True), (3, 5, True), (5, 3, False), (8, 8, True), (8, 4, False), (2, 2, True)])
def test_tree_multiplier_text_is_exact(kind, abits, wbits, signed):
    """The generated tree (partial products, adders, final +) is a*w exactly, evaluated without Yosys."""
    A, W, m, text = _eval_tree(abits, wbits, signed, kind)
    assert np.array_equal(m, (A * W) & ((1 << (abits + wbits)) - 1))
    fa, ha = map(int, re.search(r"(\d+) full adders, (\d+) half adders", text).groups())
    assert (fa + ha > 0 or abits * wbits == 4) and fa == len(re.findall(r"^\s+fa1? u", text, re.M))
    if kind == "dadda" and (abits, wbits, signed) == (8, 8, False):
        assert (fa, ha) == (35, 7)  # Dadda's n^2 - 4n + 3 full and n - 1 half adders (unsigned 8x8)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pipeline,accumulate", DESIGNS)
def test_every_design_synthesizes_and_passes_exhaustive_check(arch, pipeline, accumulate):
    """Each stage of every design option, small widths (w 3 bits x a 4 bits: wbits != abits),
    signed and unsigned: synthesized and exhaustively checked (synthesize_mac checks), and
    the check is really run again here with the stage's own identity."""
    for signed in (True, False):
        spec = MacSpec(3, 4, signed, 10, arch, pipeline, accumulate)
        for st in spec.stages:
            net = synthesize_mac(spec, stage=st)
            n = functional_check(net, spec, stage=st)
            assert n >= 1 << 7


def test_wallace_structure_survives_and_a_changed_gate_fails():
    """Wallace 4x4 signed: the adder instances survive synthesis (scoped gate names), and
    swapping one gate's cell for another with the same pins makes the exhaustive check fail."""
    spec = MacSpec(4, 4, True, 12, "wallace")
    net = synthesize_mac(spec)
    text = mac_verilog(spec)
    n_adders = len(re.findall(r"^\s+(?:fa1?|ha) u\d+ ", text, re.M))
    adder = re.compile(r"u_mul\.\\?u(\d+)\.")  # gates of adder instance u<k> after flatten
    kept = {m[1] for g in net.gates if (m := adder.search(g.name))}
    assert len(kept) == n_adders, "every full/half adder instance keeps its own gates"
    swaps = {"$_XOR_": "$_XNOR_", "$_XNOR_": "$_XOR_", "$_AND_": "$_OR_", "$_OR_": "$_AND_", "$_NAND_": "$_NOR_",
             "$_NOR_": "$_NAND_", "$_ANDNOT_": "$_ORNOT_", "$_ORNOT_": "$_ANDNOT_"}
    from halo_opt.hardware.netlist import YOSYS_CELLS

    tried = 0
    for gi, g in enumerate(net.gates):
        if g.cell in swaps and adder.search(g.name) and tried < 6:
            bad = replace(net, gates=list(net.gates), cells={**net.cells, swaps[g.cell]: YOSYS_CELLS[swaps[g.cell]]})
            bad.gates[gi] = Gate(g.name, swaps[g.cell], g.inputs, g.output)
            with pytest.raises(UserError, match="fails y = p \\+ a\\*w"):
                functional_check(bad, spec)
            tried += 1
    assert tried == 6
    functional_check(net, spec)  # the unmutated netlist still passes


def test_carry_save_check_is_on_the_sum_and_catches_a_wrong_pair():
    spec = MacSpec(3, 3, True, 8, "array", "combinational", "csa")
    net = synthesize_mac(spec)
    # brute force: ys + yc == ps + pc + a*w mod 2^8 on every a, w and a grid of (ps, pc)
    A, W, PS, PC = (g.ravel() for g in np.meshgrid(code_range(3, True), code_range(3, True), [0, 255, 17, 128], [0, 255, 99], indexing="ij"))
    out = simulate(net, {"a": A, "w": W, "ps": PS, "pc": PC})
    assert np.array_equal((out["ys"] + out["yc"]) & 255, (PS + PC + A * W) & 255)
    # swap ys and yc bits 1 (still a valid pair) and ys[0] <-> nothing: the check must fail
    bad = replace(net, outputs={"ys": list(net.outputs["ys"]), "yc": list(net.outputs["yc"])})
    bad.outputs["ys"][1], bad.outputs["yc"][2] = bad.outputs["yc"][2], bad.outputs["ys"][1]
    with pytest.raises(UserError, match="ys \\+ yc = ps \\+ pc \\+ a\\*w"):
        functional_check(bad, spec)
    ok = replace(net, outputs={"ys": list(net.outputs["yc"]), "yc": list(net.outputs["ys"])})  # swapping the pair keeps the sum
    functional_check(ok, spec)


def test_timing_view_ports_and_weight_independent_stages():
    spec = MacSpec(4, 4, True, 12, "array", "registered", "csa")
    for st in spec.stages:
        net = synthesize_mac(spec, stage=st)
        v = timing_view(net, spec, st)
        assert set(v.inputs) == {"a", "w", "p"} and set(v.outputs) == {"y"}
        v.validate()
        if st != "mul":  # weight-independent: w is one unconnected net, every code times the same
            assert len(v.inputs["w"]) == 1 and all(v.inputs["w"][0] not in g.inputs for g in v.gates)
            d = static_timing(v, BuiltinDelay(), [0, -1]).delay_ps
            assert d[0] == d[1] > 0
    assert product_sample(spec, 20, 0).size == 20 and set(product_sample(spec, 300, 0)) <= set(np.multiply.outer(code_range(4, True), code_range(4, True)).ravel())


@pytest.fixture(scope="module")
def registered_profiles():
    out = {}
    for accu in ("cpa", "csa"):
        cfg = CharacterizeConfig(MacSpec(4, 6, True, 12, "dadda", "registered", accu), n_psums=8, n_energy=64)
        out[accu] = characterize(cfg)
    return out


def test_registered_cycle_is_max_of_stages(registered_profiles):
    """delay = max(weight-dependent mul stage per code, weight-independent accumulate floor),
    for both timing modes; resolve (carry-save) is reported but not in the cycle."""
    for accu, (prof, books, net) in registered_profiles.items():
        st = prof.meta["stages"]
        t = prof.table
        assert set(st) == ({"mul", "acc", "resolve"} if accu == "csa" else {"mul", "acc"})
        assert st["mul"]["weight_dependent"] and not st["acc"]["weight_dependent"]
        assert np.allclose(t["delay_static_ps"], np.maximum(t["stage_static_ps"], st["acc"]["static_ps"]))
        assert np.allclose(t["delay_float_ps"], np.maximum(t["stage_float_ps"], st["acc"]["float_ps"]))
        assert (t["delay_float_ps"] <= t["delay_static_ps"] + 1e-9).all()
        assert st["mul"]["static_ps"] == pytest.approx(t["stage_static_ps"].max())
        assert prof.meta["gates"] == st["mul"]["gates"] + st["acc"]["gates"]
        assert "excluded" in prof.meta["registers"] and prof.meta["pipeline"] == "registered"
        assert books[0].name == "full" and books[0].delay_ps == pytest.approx(t["delay_static_ps"].max())
        # DVFS f0 is anchored at the critical stage of the full grid
        table = load_dvfs("tpu_like", books[0].delay_ps, load_voltage_law("generic"))
        crit = max(st["mul"]["static_ps"], st["acc"]["static_ps"])
        assert table.level("nominal").freq_hz == pytest.approx(1e12 / (crit * (1 + table.margin)))
        # the multiplier stage alone, timed as its own netlist, gives the stage column
        mul = timing_view(synthesize_mac(MacSpec(4, 6, True, 12, "dadda", "registered", accu), stage="mul"), MacSpec(4, 6, True, 12, "dadda", "registered", accu), "mul")
        assert np.allclose(static_timing(mul, BuiltinDelay(), prof.codes).delay_ps, t["stage_static_ps"])
    csa = registered_profiles["csa"][0].meta["stages"]
    assert csa["acc"]["static_ps"] < registered_profiles["cpa"][0].meta["stages"]["acc"]["static_ps"]  # 3:2 row < CPA
    assert csa["resolve"]["per"] == "column"


def test_combinational_profile_keeps_the_default_columns():
    prof, books, net = characterize(CharacterizeConfig(MacSpec(3, 5, False, 10, "wallace"), n_psums=4, n_energy=32))
    cols = list(prof.table.columns)
    assert cols[:4] == ["code", "delay_static_ps", "delay_float_ps", "energy_fj"] and not any(c.startswith("stage_") for c in cols)
    assert np.allclose(prof.table["energy_fj"], prof.table["energy_switch_fj"] + prof.table["energy_internal_fj"])
    assert prof.codes.tolist() == list(range(8)) and prof.meta["stages"]["mac"]["gates"] == len(net.gates)
    assert prof.meta["design"] == "mac_u3x5_acc10_wallace"


def test_user_netlist_only_for_the_single_stage_design(tmp_path):
    cfg = CharacterizeConfig(MacSpec(4, 4, True, 12, "array", "registered"), netlist=tmp_path / "x.json")
    with pytest.raises(UserError, match="--netlist takes one combinational"):
        characterize(cfg)


def test_combinational_delay_is_bounded_by_the_sum_of_its_stages():
    """Wallace keeps its hierarchy, so the combinational MAC is exactly the multiplier stage
    composed with the accumulate stage (same gate count). Per code, with built-in delays (no
    slew dependence), its static delay lies above the multiplier stage's and at most
    ``mul(q) + acc``: pipelining turns the sum into a max."""
    comb, reg = MacSpec(4, 4, True, 12, "wallace"), MacSpec(4, 4, True, 12, "wallace", "registered")
    codes = code_range(4, True)
    views = {st: timing_view(synthesize_mac(reg, stage=st), reg, st) for st in reg.stages}
    mac = synthesize_mac(comb)
    assert len(mac.gates) == len(views["mul"].gates) + len(views["acc"].gates)
    d = static_timing(mac, BuiltinDelay(), codes).delay_ps
    mul = static_timing(views["mul"], BuiltinDelay(), codes).delay_ps
    acc = static_timing(views["acc"], BuiltinDelay(), [0]).delay_ps[0]
    live = mul > 0
    assert (d[live] > mul[live]).all() and (d <= mul + acc + 1e-9).all()
    assert acc > 0 and (np.maximum(mul, acc) < mul + acc)[live].all()  # so the registered cycle is strictly shorter
