"""Delay models: NLDM interpolation/extrapolation, loads, built-in logical effort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from halo_opt.hardware.delay import LOGICAL_EFFORT, BuiltinDelay, LibertyDelay, fo4_ps, interp2
from halo_opt.hardware.liberty import Table, read_liberty
from halo_opt.hardware.netlist import YOSYS_CELLS, Gate, Netlist

from shared_files import SKY130  # noqa: E402  (beside the clone: REPO/../shared)

T = Table(np.array([10.0, 20.0, 40.0]), np.array([1.0, 3.0]), np.array([[1.0, 2.0], [3.0, 5.0], [4.0, 9.0]]))


def test_interp_grid_points_exact():
    for i, x in enumerate(T.index_1):
        for j, y in enumerate(T.index_2):
            assert interp2(T, np.array([x]), y)[0] == pytest.approx(T.values[i, j])


@settings(max_examples=100, deadline=None)
@given(st.floats(-20, 80), st.floats(-2, 8))
def test_interp_is_bilinear_with_edge_extrapolation(x, y):
    # reference: pick the segment (clamped to the edge ones), then the bilinear formula
    i = min(max(np.searchsorted(T.index_1, x, side="right") - 1, 0), 1)
    j = 0
    x0, x1, y0, y1 = T.index_1[i], T.index_1[i + 1], T.index_2[j], T.index_2[j + 1]
    u, w = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
    v = T.values
    ref = (1 - u) * (1 - w) * v[i, j] + u * (1 - w) * v[i + 1, j] + (1 - u) * w * v[i, j + 1] + u * w * v[i + 1, j + 1]
    assert interp2(T, np.array([x]), y)[0] == pytest.approx(ref, abs=1e-9)


def test_interp_length_one_axis_is_constant():
    t = Table(np.array([5.0]), np.array([1.0, 2.0]), np.array([[3.0, 5.0]]))
    np.testing.assert_allclose(interp2(t, np.array([0.0, 100.0]), 1.5), [4.0, 4.0])


def _chain():
    # a0 -> NOT -> NAND(.., a1) -> y ; NOT also drives an XOR with a1
    g = [Gate("n", "$_NOT_", (2,), 5), Gate("d", "$_NAND_", (5, 3), 6), Gate("x", "$_XOR_", (5, 3), 7)]
    return Netlist("c", 8, {"a": [2, 3], "w": [4], "p": []}, {"y": [6, 7]}, g, dict(YOSYS_CELLS))


def test_builtin_logical_effort_delays():
    nl = _chain()
    m = BuiltinDelay(tau_ps=10.0, output_load=1.0)
    load = m.load_units(nl)
    assert load[5] == pytest.approx(4 / 3 + 4)  # NAND input + XOR input
    assert load[3] == pytest.approx(4 / 3 + 4)
    arcs = m.gate_arcs(nl)
    d, s = arcs[0][0][0](True, np.zeros(3))
    np.testing.assert_allclose(d, 10.0 * (1 + 4 / 3 + 4))
    np.testing.assert_allclose(s, 0.0)
    d, _ = arcs[1][1][0](False, np.zeros(1))
    assert d[0] == pytest.approx(10.0 * (2 + 1))  # NAND p=2 driving one output load
    assert set(LOGICAL_EFFORT) == set(YOSYS_CELLS)


@pytest.mark.skipif(not SKY130.is_file(), reason="sky130 Liberty not available")
def test_liberty_loads_and_arc_senses():
    lib = read_liberty(SKY130)
    cells = lib.logic_cells()
    inv, nand, xor = "sky130_fd_sc_hd__inv_1", "sky130_fd_sc_hd__nand2_1", "sky130_fd_sc_hd__xor2_1"
    g = [Gate("n", inv, (2,), 5), Gate("d", nand, (5, 3), 6), Gate("x", xor, (5, 3), 7)]
    nl = Netlist("c", 8, {"a": [2, 3], "w": [4], "p": []}, {"y": [6, 7]}, g, {k: cells[k] for k in (inv, nand, xor)})
    m = LibertyDelay(lib, wire_ff_per_fanout=1.0, output_load_ff=2.0)
    load = m.loads_ff(nl)
    pa, px = lib.cell(nand).pins["A"], lib.cell(xor).pins["A"]
    assert load[5, 1] == pytest.approx(pa.rise_cap_ff + px.rise_cap_ff + 2.0)
    assert load[5, 0] == pytest.approx(pa.fall_cap_ff + px.fall_cap_ff + 2.0)
    assert load[6, 1] == pytest.approx(2.0)
    arcs = m.gate_arcs(nl)
    assert [a.sense for a in arcs[0][0]] == ["negative_unate"]
    assert sorted(a.sense for a in arcs[2][0]) == ["negative_unate", "positive_unate"]
    # NLDM value at a grid point of the inv_1 table (slew 10 ps, load = 0.5 fF grid) matches the file
    t = lib.cell(inv).arcs_from("A")[0].cell_rise
    assert interp2(t, np.array([t.index_1[0]]), t.index_2[0])[0] == pytest.approx(t.values[0, 0])
    assert 60.0 < fo4_ps(lib) < 100.0
