"""Liberty power: units, voltage, internal-power interpolation and ``when`` selection, state
leakage, and the bit-parallel breakdown against a per-vector scalar reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.hardware.delay import interp2
from halo_opt.hardware.energy import mac_energy, mac_energy_breakdown, net_caps_ff
from halo_opt.hardware.liberty_power import read_liberty_power
from halo_opt.hardware.netlist import Cell, Gate, Netlist

from shared_files import LIBERTY as SHARED  # noqa: E402  (beside the clone: REPO/../shared)

FAKE = """
library (fake) {
  time_unit : "1ns"; voltage_unit : "1V"; leakage_power_unit : "1nW";
  capacitive_load_unit (1, pf);
  nom_voltage : %(v)s;
  power_lut_template (p2) { variable_1 : input_transition_time; variable_2 : total_output_net_capacitance;
    index_1 ("0.01, 0.05"); index_2 ("0.001, 0.005"); }
  power_lut_template (p2t) { variable_1 : total_output_net_capacitance; variable_2 : input_transition_time;
    index_1 ("0.001, 0.005"); index_2 ("0.01, 0.05"); }
  power_lut_template (p1) { variable_1 : input_transition_time; index_1 ("0.01, 0.05"); }
  cell (nd2) {
    area : 1; cell_leakage_power : 5;
    leakage_power () { value : 1; when : "!A&!B"; }
    leakage_power () { value : 2; when : "!A&B"; }
    leakage_power () { value : 3; when : "A&B&!Y"; }
    pin (A) { direction : input; capacitance : 0.002;
      internal_power () { rise_power (p1) { values ("0.001, 0.003"); } fall_power (p1) { values ("0.002, 0.002"); } } }
    pin (B) { direction : input; capacitance : 0.003; }
    pin (Y) { direction : output; function : "!(A&B)";
      internal_power () { related_pin : "A"; when : "B";
        rise_power (p2) { values ("0.010, 0.020", "0.030, 0.040"); }
        fall_power (p2t) { values ("0.1, 0.3", "0.2, 0.4"); } }
      internal_power () { related_pin : "A";
        rise_power (p2) { values ("1, 1", "1, 1"); } fall_power (p2) { values ("1, 1", "1, 1"); } }
      internal_power () { related_pin : "B";
        rise_power (p2) { values ("0.005, 0.006", "0.007, 0.008"); } fall_power (p2) { values ("0.004, 0.004", "0.004, 0.004"); } }
    }
  }
  cell (xr2) {
    area : 2; cell_leakage_power : 7;
    leakage_power () { value : 4; when : "A&!B&X"; related_pg_pin : VDD; }
    leakage_power () { value : 0.5; when : "A&!B&X"; related_pg_pin : VSS; }
    leakage_power () { value : 6; when : "!A&!B"; }
    leakage_power () { value : 8; }
    pin (A) { direction : input; capacitance : 0.004; }
    pin (B) { direction : input; capacitance : 0.005;
      internal_power () { when : "A"; rise_power (p1) { values ("0.011, 0.013"); } fall_power (p1) { values ("0.012, 0.016"); } } }
    pin (X) { direction : output; function : "(A^B)";
      internal_power () { related_pin : "A"; when : "B";
        rise_power (p2) { values ("0.02, 0.03", "0.05, 0.07"); } fall_power (p2) { values ("0.01, 0.01", "0.02, 0.03"); } }
      internal_power () { related_pin : "A"; when : "!B";
        rise_power (p2) { values ("0.09, 0.08", "0.07, 0.06"); } fall_power (p2) { values ("-0.01, -0.02", "-0.03, -0.05"); } }
      internal_power () { related_pin : "B";
        rise_power (p2) { values ("0.015, 0.025", "0.035, 0.045"); } fall_power (p2) { values ("0.002, 0.004", "0.006, 0.008"); } }
    }
  }
  cell (inv) {
    area : 1; cell_leakage_power : 0.7;
    pin (A) { direction : input; capacitance : 0.001; }
    pin (Y) { direction : output; function : "!A";
      internal_power () { related_pin : "A";
        rise_power (p2) { values ("0.003, 0.004", "0.005, 0.006"); } fall_power (p2) { values ("0.001, 0.002", "0.003, 0.004"); } }
    }
  }
}
"""
CELLS = {"nd2": Cell("nd2", ("A", "B"), "Y", "~(A & B)"), "xr2": Cell("xr2", ("A", "B"), "X", "(A ^ B)"),
         "inv": Cell("inv", ("A",), "Y", "~(A)")}


def fake_lib(tmp: Path, v: float = 1.2, extra: str = "", name: str = "fake.lib") -> Path:
    p = tmp / name
    p.write_text(FAKE.replace("library (fake) {", "library (fake) {" + extra) % {"v": v})
    return p


def test_units_and_interpolation_by_hand(tmp_path):
    pw = read_liberty_power(fake_lib(tmp_path))
    assert pw.voltage == 1.2 and pw.voltage_source == "nom_voltage"
    nd = pw.cell("nd2")
    when_b, uncond = nd.arc_groups("Y", "A")
    assert (when_b.when, uncond.when) == ("B", None)
    t = when_b.rise[0]  # ns -> ps, pF -> fF, pJ -> fJ
    np.testing.assert_allclose(t.index_1, [10, 50])
    np.testing.assert_allclose(t.index_2, [1, 5])
    # bilinear at slew 20 ps (u = 1/4), load 3 fF (w = 1/2): (10·½+20·½)·¾ + (30·½+40·½)·¼ = 20 fJ
    assert interp2(t, np.array([20.0]), 3.0)[0] == pytest.approx(20.0)
    # template with (load, slew) order is transposed: slew 20, load 2 -> 0.125·¾ + 0.325·¼ pJ
    assert interp2(when_b.fall[0], np.array([20.0]), 2.0)[0] == pytest.approx(175.0)
    # beyond the axes: linear extrapolation of the edge segment
    assert interp2(t, np.array([90.0]), 5.0)[0] == pytest.approx(40 + (40 - 20))
    assert nd.arc_groups("A", None)[0].rise[0].values.shape == (2, 1)
    assert dict(nd.leakage) == {"(~(A) & ~(B))": pytest.approx(1e-9), "(~(A) & B)": pytest.approx(2e-9), "((A & B) & ~(Y))": pytest.approx(3e-9)}
    assert nd.default_leakage_w == pytest.approx(5e-9)
    xr = pw.cell("xr2")  # groups of one when summed over pg pins; the unconditional one is the default
    assert dict(xr.leakage) == {"((A & ~(B)) & X)": pytest.approx(4.5e-9), "(~(A) & ~(B))": pytest.approx(6e-9)}
    assert xr.default_leakage_w == pytest.approx(8e-9)


def test_voltage_sources_and_units(tmp_path):
    rail = 'voltage_map (VDD, 1.1); voltage_map (VSS, 0);'
    lib = FAKE.replace("cell (inv) {", 'cell (inv) { pg_pin (VDD) { pg_type : primary_power; voltage_name : "VDD"; }')
    p = tmp_path / "rail.lib"
    p.write_text(lib.replace("library (fake) {", "library (fake) {" + rail) % {"v": 1.2})
    pw = read_liberty_power(p)
    assert pw.voltage == pytest.approx(1.1) and pw.voltage_source == "voltage_map(VDD)"
    # ASAP7-style units: ps and fF axes, energy in V²·fF = fJ, leakage in pW
    asap = (FAKE % {"v": 0.7}).replace('"1ns"', '"1ps"').replace("(1, pf)", "(1, ff)").replace('"1nW"', '"1pW"')
    (tmp_path / "a.lib").write_text(asap)
    pa = read_liberty_power(tmp_path / "a.lib")
    t = pa.cell("nd2").arc_groups("Y", "A")[0].rise[0]
    np.testing.assert_allclose(t.index_1, [0.01, 0.05])
    np.testing.assert_allclose(t.index_2, [0.001, 0.005])
    np.testing.assert_allclose(t.values, [[0.010, 0.020], [0.030, 0.040]])
    assert pa.cell("nd2").default_leakage_w == pytest.approx(5e-12)
    with pytest.raises(UserError, match="different supply voltages"):
        read_liberty_power([tmp_path / "a.lib", fake_lib(tmp_path)])
    (tmp_path / "bad.lib").write_text(FAKE.replace('when : "!A&!B"', 'when : "!A&!Q"') % {"v": 1.2})
    with pytest.raises(UserError, match="not pins of the cell"):
        read_liberty_power(tmp_path / "bad.lib")


def one_gate(cell: str = "nd2") -> Netlist:
    g = [Gate("g", cell, (2, 3), 5)]
    return Netlist("t", 6, {"a": [2], "w": [3], "p": [4]}, {"y": [5]}, g, {cell: CELLS[cell]}, meta={"signed": False})


def test_held_weight_energy_by_hand(tmp_path):
    """nd2(A = a0, B = w0), a = 0,1,0,1, output load 3 fF, slew of a0: rise 30 ps, fall 20 ps."""
    pw = read_liberty_power(fake_lib(tmp_path))
    net = one_gate()
    caps = np.array([0, 0, 2.0, 3.0, 0, 3.0])
    slew = np.zeros((6, 2, 2))
    slew[2] = [[20, 20], [30, 30]]  # [edge][code]
    eb = mac_energy_breakdown(net, [0, 1], [0, 1, 0, 1], [0, 0, 0, 0], caps_ff=caps, v0=1.0, power=pw, slew_ps=slew)
    assert eb.voltage == 1.2
    # w = 1: A-arc group "when B": Y falls (A rises, slew 30, load 3): 250 fJ twice; Y rises (A falls,
    # slew 20): 20 fJ; input pin A: rise 2 fJ twice, fall 2 fJ. Over 3 transitions.
    # w = 0: Y stays 1; only the input pin: 3 x 2 fJ.
    np.testing.assert_allclose(eb.internal_fj, [6 / 3, (2 * 250 + 20 + 3 * 2) / 3])
    np.testing.assert_allclose(eb.switch_fj, [0.5 * 1.44 * 2 * 3 / 3, 0.5 * 1.44 * (2 * 3 + 3 * 3) / 3])
    # leakage: w = 0 states !A&!B (1 nW) and A&!B (no when: default 5 nW); w = 1: !A&B (2), A&B&!Y (3)
    np.testing.assert_allclose(eb.leakage_nw, [3.0, 2.5])
    np.testing.assert_allclose(eb.total_fj, eb.switch_fj + eb.internal_fj)


def test_switching_scales_with_library_voltage(tmp_path):
    net = one_gate("xr2")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 50)
    caps = np.array([0, 0, 2.0, 3.0, 0, 4.0])
    e = {v: mac_energy_breakdown(net, [0, 1], a, np.zeros(50, int), caps_ff=caps, v0=1.0,
                                 power=read_liberty_power(fake_lib(tmp_path, v, name=f"v{v}.lib"))) for v in (1.0, 1.2)}
    np.testing.assert_allclose(e[1.2].switch_fj, 1.44 * e[1.0].switch_fj)
    np.testing.assert_allclose(e[1.2].internal_fj, e[1.0].internal_fj)  # tables are energies at the library's corner
    np.testing.assert_allclose(e[1.0].switch_fj, mac_energy(net, caps, [0, 1], a, np.zeros(50, int), 1.0))
    assert (e[1.0].switch_fj > 0).all()


def test_builtin_model_is_switching_only():
    from halo_opt.hardware.netlist import YOSYS_CELLS

    g = [Gate("x", "$_XOR_", (2, 3), 5)]
    net = Netlist("b", 6, {"a": [2], "w": [3], "p": [4]}, {"y": [5]}, g, dict(YOSYS_CELLS), meta={"signed": False})
    caps = net_caps_ff(net)
    a = [0, 1, 1, 0, 1]
    eb = mac_energy_breakdown(net, [0, 1], a, [0] * 5, caps_ff=caps, v0=1.0)
    assert eb.voltage_source == "voltage-law" and eb.voltage == 1.0
    np.testing.assert_allclose(eb.switch_fj, mac_energy(net, caps, [0, 1], a, [0] * 5, 1.0))
    assert not eb.internal_fj.any() and not eb.leakage_nw.any()


# ------------------------------------------------------------------ scalar reference


def _truth(expr, env) -> int:
    return eval(expr, {"__builtins__": {}}, env) & 1


def _select(groups, env):
    for g in groups:
        if g.when is None or _truth(g.when, env):
            return g
    return None


def reference(net: Netlist, pw, code: int, a, p, caps, slew):
    """Per-vector, per-gate evaluation of the rules in the energy module docstring."""
    vals = []
    for av, pv in zip(a, p):
        v = {0: 0, 1: 1}
        for port, x in (("a", av), ("w", code), ("p", pv)):
            for b, n in enumerate(net.inputs[port]):
                v[n] = (x >> b) & 1
        for g in net.gates:
            c = net.cells[g.cell]
            v[g.output] = _truth(c.function, dict(zip(c.inputs, (v[n] for n in g.inputs))))
        vals.append(v)
    internal = leak = 0.0
    for t, v in enumerate(vals):
        for g in net.gates:
            c, cp = net.cells[g.cell], pw.cell(g.cell)
            env = {**{pin: v[n] for pin, n in zip(c.inputs, g.inputs)}, c.output: v[g.output]}
            lk = _select([*(type("L", (), {"when": w, "w": x}) for w, x in cp.leakage)], env)
            leak += lk.w if lk else cp.default_leakage_w
            if t == 0:
                continue
            u = vals[t - 1]
            tog = [(pin, n) for pin, n in zip(c.inputs, g.inputs) if v[n] != u[n]]
            for pin, n in tog:
                e_in = v[n]
                grp = _select(cp.arc_groups(pin, None), env)
                if grp:
                    internal += sum(interp2(tb, np.array([slew[n, e_in]]), 0.0)[0] for tb in (grp.rise if e_in else grp.fall))
                if v[g.output] != u[g.output]:
                    grp = _select(cp.arc_groups(c.output, pin), env)
                    if grp:
                        tabs = grp.rise if v[g.output] else grp.fall
                        internal += sum(interp2(tb, np.array([slew[n, e_in]]), caps[g.output])[0] for tb in tabs) / len(tog)
    n_t = len(a) - 1
    return internal / n_t, leak / len(a) * 1e9


@st.composite
def lib_netlists(draw):
    inputs = {"a": [2, 3, 4], "w": [5, 6], "p": [7]}
    nets, gates, nxt = list(range(2, 8)), [], 8
    for i in range(draw(st.integers(1, 8))):
        cell = draw(st.sampled_from(sorted(CELLS)))
        ins = tuple(draw(st.sampled_from(nets)) for _ in CELLS[cell].inputs)
        gates.append(Gate(f"g{i}", cell, ins, nxt))
        nets.append(nxt)
        nxt += 1
    return Netlist("rnd", nxt, inputs, {"y": [nxt - 1]}, gates, dict(CELLS), meta={"signed": False})


@pytest.fixture(scope="module")
def fake_power(tmp_path_factory):
    return read_liberty_power(fake_lib(tmp_path_factory.mktemp("lib")))


@settings(max_examples=40, deadline=None)
@given(lib_netlists(), st.integers(2, 40), st.integers(0, 2**31))
def test_breakdown_matches_scalar_reference(fake_power, net, n, seed):
    rng = np.random.default_rng(seed)
    a, p = rng.integers(0, 8, n), rng.integers(0, 2, n)
    codes = np.arange(4)
    caps = rng.uniform(0.5, 6.0, net.n_nets)
    slew = rng.uniform(0.0, 70.0, (net.n_nets, 2, codes.size))
    eb = mac_energy_breakdown(net, codes, a, p, caps_ff=caps, v0=1.0, power=fake_power, slew_ps=slew, chunk_codes=3)
    for ci, c in enumerate(codes):
        e_int, leak = reference(net, fake_power, int(c), a, p, caps, slew[:, :, ci])
        assert eb.internal_fj[ci] == pytest.approx(e_int, rel=1e-9, abs=1e-9)
        assert eb.leakage_nw[ci] == pytest.approx(leak, rel=1e-9)


@pytest.mark.skipif(not (SHARED / "sky130hd_tt.lib.gz").is_file(), reason="sky130 Liberty not available (../shared/liberty)")
def test_real_libraries_voltage_and_scale():
    sky = read_liberty_power(SHARED / "sky130hd_tt.lib.gz")
    assert sky.voltage == pytest.approx(1.8) and sky.voltage_source.startswith("voltage_map")
    t = sky.cell("sky130_fd_sc_hd__nand2_1").arc_groups("Y", "A")[0].rise[0]
    assert t.values[0, 0] == pytest.approx(3.7314)  # 0.0037314 pJ at 10 ps, 0.5 fF
    assert (t.index_1[0], t.index_2[0]) == (pytest.approx(10.0), pytest.approx(0.5))
    sg = SHARED / "sg13g2_stdcell_typ_1p20V_25C.lib.gz"
    if sg.is_file():
        ihp = read_liberty_power(sg)
        assert ihp.voltage == pytest.approx(1.2) and ihp.voltage_source == "nom_voltage"
        assert [g.when for g in ihp.cell("sg13g2_xor2_1").arc_groups("X", "A")] == ["B", "~(B)", None]
