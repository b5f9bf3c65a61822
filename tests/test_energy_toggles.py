"""Per-code switching energy: bit-parallel toggle counts vs a per-vector scalar reference,
the ½CV² formula on hand circuits, net capacitances, activation sampling, leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.hardware.energy import UNIT_CAP_FF, draw_activations, leakage_w, mac_energy, net_caps_ff, toggle_counts
from halo_opt.hardware.netlist import YOSYS_CELLS, Gate, Netlist

from shared_files import SKY130  # noqa: E402  (beside the clone: REPO/../shared)
CELLS = sorted(YOSYS_CELLS)


def scalar_values(nl: Netlist, code: int, a: int, p: int) -> dict[int, int]:
    v = {0: 0, 1: 1}
    for port, x in (("a", a), ("w", code), ("p", p)):
        for b, n in enumerate(nl.inputs[port]):
            v[n] = (x >> b) & 1
    for g in nl.gates:
        c = YOSYS_CELLS[g.cell]
        v[g.output] = eval(c.function, {}, dict(zip(c.inputs, (v[n] for n in g.inputs)))) & 1
    return v


def ref_toggles(nl, code, a_seq, p_seq):
    vals = [scalar_values(nl, code, int(a), int(p)) for a, p in zip(a_seq, p_seq)]
    return np.array([sum(vals[t][n] != vals[t - 1][n] for t in range(1, len(vals))) if n in vals[0] else 0
                     for n in range(nl.n_nets)])


@st.composite
def netlists(draw):
    inputs = {"a": [2, 3], "w": [4, 5], "p": [6, 7, 8]}
    nets, gates, nxt = list(range(2, 9)), [], 9
    for i in range(draw(st.integers(1, 12))):
        cell = draw(st.sampled_from(CELLS))
        ins = tuple(draw(st.sampled_from(nets)) for _ in YOSYS_CELLS[cell].inputs)
        gates.append(Gate(f"g{i}", cell, ins, nxt))
        nets.append(nxt)
        nxt += 1
    return Netlist("rnd", nxt, inputs, {"y": [nxt - 1]}, gates, dict(YOSYS_CELLS), meta={"signed": False})


@settings(max_examples=60, deadline=None)
@given(netlists(), st.integers(2, 150), st.integers(0, 2**31))
def test_toggles_match_scalar_reference(nl, n, seed):
    rng = np.random.default_rng(seed)
    a, p = rng.integers(0, 4, n), rng.integers(0, 8, n)
    codes = np.arange(4)
    T = toggle_counts(nl, codes, a, p, chunk_codes=3)  # chunking across codes is exercised
    for ci, c in enumerate(codes):
        np.testing.assert_array_equal(T[:, ci], ref_toggles(nl, int(c), a, p))
    np.testing.assert_array_equal(T[nl.inputs["w"]], 0)  # held weight never toggles


def test_energy_formula_on_inverter_chain():
    # a0 -> NOT -> NOT -> y ; caps: a0 2 fF, n5 3 fF, y 5 fF
    g = [Gate("i1", "$_NOT_", (2,), 5), Gate("i2", "$_NOT_", (5,), 6)]
    nl = Netlist("inv", 7, {"a": [2], "w": [3], "p": [4]}, {"y": [6]}, g, dict(YOSYS_CELLS))
    caps = np.zeros(7)
    caps[[2, 5, 6]] = [2.0, 3.0, 5.0]
    a = np.array([0, 1, 1, 0, 1])  # 3 toggles in 4 transitions on every net of the chain
    e = mac_energy(nl, caps, [0, 1], a, np.zeros(5, int), v0=1.2)
    np.testing.assert_allclose(e, 0.5 * 1.2**2 * (2 + 3 + 5) * 3 / 4)


def test_weight_zero_silences_the_product():
    from halo_opt.hardware.verilog import MacSpec
    from halo_opt.hardware.yosys import synthesize_mac

    nl = synthesize_mac(MacSpec(4, 4, True, 10, "array"))
    rng = np.random.default_rng(0)
    a, p = rng.integers(-8, 8, 300), np.zeros(300, int)  # p held: only the product can switch
    caps = net_caps_ff(nl)
    e = mac_energy(nl, caps, [0, 1, -8, 7], a, p, 1.0)
    input_share = 0.5 * (caps[nl.inputs["a"]] @ toggle_counts(nl, [0], a, p)[nl.inputs["a"], 0]) / 299
    assert e[0] == pytest.approx(input_share)  # w = 0: only the a input pins toggle
    assert (e[1:] > 2 * e[0]).all()
    for ci, c in enumerate([0, 7]):  # also against the scalar reference on a short slice
        T = toggle_counts(nl, [c], a[:40], p[:40])[:, 0]
        np.testing.assert_array_equal(T, ref_toggles(nl, c & 15, a[:40] & 15, p[:40]))


def test_builtin_caps_follow_logical_effort():
    g = [Gate("n", "$_NAND_", (2, 3), 5), Gate("x", "$_XOR_", (2, 5), 6)]
    nl = Netlist("c", 7, {"a": [2, 3], "w": [4], "p": []}, {"y": [6]}, g, dict(YOSYS_CELLS))
    caps = net_caps_ff(nl, unit_cap_ff=2.0, wire_ff_per_fanout=0.5)
    assert caps[2] == pytest.approx(2.0 * (4 / 3 + 4) + 2 * 0.5)
    assert caps[5] == pytest.approx(2.0 * 4 + 0.5)
    assert caps[6] == pytest.approx(2.0)  # output bit: one unit inverter input
    assert caps[0] == caps[1] == 0.0
    assert net_caps_ff(nl)[6] == pytest.approx(UNIT_CAP_FF)


@pytest.mark.skipif(not SKY130.is_file(), reason="sky130 Liberty not available")
def test_liberty_caps_and_leakage():
    from halo_opt.hardware.liberty import read_liberty

    lib = read_liberty(SKY130)
    cells = lib.logic_cells()
    nand, inv = "sky130_fd_sc_hd__nand2_1", "sky130_fd_sc_hd__inv_1"
    g = [Gate("n", nand, (2, 3), 5), Gate("i", inv, (5,), 6), Gate("j", inv, (2,), 7)]
    nl = Netlist("c", 8, {"a": [2, 3], "w": [4], "p": []}, {"y": [6, 7]}, g, {k: cells[k] for k in (nand, inv)})
    caps = net_caps_ff(nl, lib)
    assert caps[2] == pytest.approx(lib.cell(nand).pins["A"].cap_ff + lib.cell(inv).pins["A"].cap_ff)
    assert caps[6] == 0.0  # no external load unless asked
    assert net_caps_ff(nl, lib, output_load_ff=1.5)[6] == pytest.approx(1.5)
    assert leakage_w(nl, lib) == pytest.approx(lib.cell(nand).leakage_w + 2 * lib.cell(inv).leakage_w)
    assert 1e-12 < leakage_w(nl, lib) < 1e-9
    assert leakage_w(nl, None) == 0.0


def test_draw_activations_uniform_and_histogram():
    rng = np.random.default_rng(3)
    u = draw_activations(20000, 4, True, rng)
    assert u.min() == -8 and u.max() == 7
    h = np.zeros(16)
    h[[0, 15]] = [1, 3]  # values -8 and 7 with odds 1:3
    x = draw_activations(20000, 4, True, np.random.default_rng(4), hist=h)
    assert set(np.unique(x)) == {-8, 7}
    assert abs((x == 7).mean() - 0.75) < 0.02
    assert set(np.unique(draw_activations(100, 2, False, rng, hist=[0, 0, 1, 0]))) == {2}
    with pytest.raises(UserError, match="histogram"):
        draw_activations(10, 4, True, rng, hist=np.ones(8))
    with pytest.raises(UserError, match="histogram"):
        draw_activations(10, 2, True, rng, hist=[0, 0, 0, 0])


def test_energy_input_errors():
    g = [Gate("i1", "$_NOT_", (2,), 5)]
    nl = Netlist("inv", 6, {"a": [2], "w": [3], "p": [4]}, {"y": [5]}, g, dict(YOSYS_CELLS))
    with pytest.raises(UserError, match="equally long"):
        mac_energy(nl, np.ones(6), [0], [0, 1, 0], [0, 1], 1.0)
    with pytest.raises(UserError, match="shape"):
        mac_energy(nl, np.ones(5), [0], [0, 1], [0, 1], 1.0)
    with pytest.raises(UserError, match="voltage"):
        mac_energy(nl, np.ones(6), [0], [0, 1], [0, 1], 0.0)
