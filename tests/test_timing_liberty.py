"""Liberty reader: syntax, units, tables, functions, errors; sky130 spot checks."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from halo_opt.errors import UserError
from halo_opt.hardware.liberty import liberty_function_to_python, parse_liberty, read_liberty

from shared_files import SKY130  # noqa: E402  (beside the clone: REPO/../shared)

MINI = r"""
/* a tiny library */
library (mini) {
  delay_model : table_lookup;
  time_unit : "1ps";
  leakage_power_unit : "1pW";
  capacitive_load_unit (1, ff);
  lu_table_template (slew_load) {
    variable_1 : input_net_transition;
    variable_2 : total_output_net_capacitance;
    index_1 ("1, 2");
    index_2 ("10, 20, 30");
  }
  lu_table_template (load_slew) {
    variable_1 : total_output_net_capacitance;
    variable_2 : input_net_transition;
    index_1 ("10, 20");
    index_2 ("1, 2");
  }
  cell (NAND2) {
    area : 2.5;
    cell_leakage_power : 7;
    pin (A) { direction : input; capacitance : 1.5; rise_capacitance : 1.6; fall_capacitance : 1.4; }
    pin (B) { direction : input; capacitance : 2.0; }
    pin (Y) {
      direction : output;
      function : "!(A B)";
      timing () {
        related_pin : "A B";
        timing_sense : negative_unate;
        cell_rise (slew_load) { values ("1, 2, 3", \
                                        "4, 5, 6"); }
        cell_fall (slew_load) { index_2 ("5, 6, 7"); values ("1, 1, 1", "2, 2, 2"); }
        rise_transition (load_slew) { values ("1, 2", "3, 4"); }
        fall_transition (slew_load) { values ("0, 0, 0", "0, 0, 0"); }
      }
    }
  }
  cell (DFF) {
    ff (IQ, IQN) { next_state : "D"; clocked_on : "CK"; }
    pin (D) { direction : input; capacitance : 1; }
    pin (CK) { direction : input; capacitance : 1; clock : true; }
    pin (Q) { direction : output; function : "IQ"; }
  }
  cell (HALF) {
    pin (A) { direction : input; capacitance : 1; }
    pin (B) { direction : input; capacitance : 1; }
    pin (S) { direction : output; function : "A^B"; }
    pin (C) { direction : output; function : "A*B"; }
  }
  cell (INTERNAL) {
    pin (A) { direction : input; capacitance : 1; }
    pin (Y) { direction : output; function : "A & IQ"; }
  }
  cell (WEIRD) {
    pin (A) { direction : input; capacitance : 1; }
    pin (Y) { direction : output; function : "A + (A"; }
  }
  cell (OLD) {
    dont_use : true;
    pin (A) { direction : input; capacitance : 1; }
    pin (Y) { direction : output; function : "A'"; }
  }
}
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    d = tmp_path_factory.mktemp("lib")
    (d / "mini.lib.gz").write_bytes(gzip.compress(MINI.encode()))
    return read_liberty(d / "mini.lib.gz")


def test_units_pins_and_leakage(mini):
    c = mini.cell("NAND2")
    assert c.area == 2.5 and c.leakage_w == pytest.approx(7e-12)
    a = c.pins["A"]
    assert (a.cap_ff, a.rise_cap_ff, a.fall_cap_ff) == pytest.approx((1.5, 1.6, 1.4))
    assert c.pins["B"].rise_cap_ff == pytest.approx(2.0)  # falls back to capacitance
    assert c.inputs == ("A", "B") and c.outputs == ("Y",)


def test_tables_templates_and_transpose(mini):
    arcs = mini.cell("NAND2").arcs["Y"]
    assert [a.related_pin for a in arcs] == ["A", "B"]  # "A B" -> two arcs
    a = arcs[0]
    assert a.timing_sense == "negative_unate"
    np.testing.assert_allclose(a.cell_rise.index_1, [1, 2])
    np.testing.assert_allclose(a.cell_rise.index_2, [10, 20, 30])
    np.testing.assert_allclose(a.cell_rise.values, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(a.cell_fall.index_2, [5, 6, 7])  # table index overrides template
    # template (load, slew) is transposed to (slew, load)
    np.testing.assert_allclose(a.rise_transition.index_1, [1, 2])
    np.testing.assert_allclose(a.rise_transition.index_2, [10, 20])
    np.testing.assert_allclose(a.rise_transition.values, [[1, 3], [2, 4]])


def test_time_and_cap_units_scale(tmp_path):
    txt = MINI.replace('time_unit : "1ps"', 'time_unit : "1ns"').replace("capacitive_load_unit (1, ff)", 'capacitive_load_unit (1, "pf")')
    (tmp_path / "m.lib").write_text(txt)
    c = read_liberty(tmp_path / "m.lib").cell("NAND2")
    assert c.pins["A"].cap_ff == pytest.approx(1500.0)
    t = c.arcs["Y"][0].cell_rise
    np.testing.assert_allclose(t.index_1, [1000, 2000])
    np.testing.assert_allclose(t.index_2, [10000, 20000, 30000])
    np.testing.assert_allclose(t.values[0], [1000, 2000, 3000])


def test_logic_cells_skips_sequential_multioutput_dont_use(mini):
    cells = mini.logic_cells()
    assert set(cells) == {"NAND2"}
    assert cells["NAND2"].function == "~((A & B))"
    assert set(mini.cells) == {"NAND2", "DFF", "HALF", "OLD", "WEIRD", "INTERNAL"}
    assert mini.cell("WEIRD").pins["Y"].function is None  # unparseable function: cell not usable
    assert cells.excluded == {"DFF": "sequential (ff/latch/statetable)", "HALF": "2-output (S, C)", "OLD": "dont_use",
                              "WEIRD": "function-less (no readable output function)",
                              "INTERNAL": "internal-state (function over non-input pins)"}


def test_netlist_with_an_untimeable_cell_names_why(mini):
    from halo_opt.hardware.yosys_json import parse_yosys_json

    bits = {"a": [2], "w": [3], "p": [4], "y": [5]}
    ports = {k: {"direction": "output" if k == "y" else "input", "bits": v} for k, v in bits.items()}
    data = {"modules": {"mac": {"ports": ports, "cells": {"u": {"type": "DFF", "connections": {"D": [2], "CK": [3], "Q": [5]}}}}}}
    with pytest.raises(UserError, match=r"cell u of .* has type DFF, a sequential \(ff/latch/statetable\) cell of the Liberty library mini; halo-opt times single-output combinational cells only"):
        parse_yosys_json(data, cells=mini.logic_cells(), library="mini")


def test_several_files_merge_with_own_units_and_reject_duplicates(tmp_path):
    (tmp_path / "ps_ff.lib").write_text(MINI)  # 1ps, 1ff
    ns_pf = MINI.replace('"1ps"', '"1ns"').replace("(1, ff)", "(1, pf)").replace("library (mini)", "library (big)")
    for c in ("NAND2", "DFF", "HALF", "INTERNAL", "WEIRD", "OLD"):
        ns_pf = ns_pf.replace(f"cell ({c})", f"cell ({c}_B)")
    (tmp_path / "ns_pf.lib").write_text(ns_pf)
    one, two = read_liberty(tmp_path / "ps_ff.lib"), read_liberty(tmp_path / "ns_pf.lib")
    both = read_liberty([tmp_path / "ps_ff.lib", tmp_path / "ns_pf.lib"])
    assert both.name == "mini+big" and set(both.cells) == set(one.cells) | set(two.cells)
    a, b = both.cell("NAND2").arcs["Y"][0], both.cell("NAND2_B").arcs["Y"][0]
    np.testing.assert_allclose(b.cell_rise.values, a.cell_rise.values * 1000)  # ns -> ps
    np.testing.assert_allclose(b.cell_rise.index_2, a.cell_rise.index_2 * 1000)  # pF -> fF
    assert both.cell("NAND2_B").pins["A"].cap_ff == pytest.approx(1500.0)
    assert set(both.logic_cells()) == {"NAND2", "NAND2_B"}
    assert read_liberty([tmp_path / "ps_ff.lib", tmp_path / "ps_ff.lib"]) is one  # the same file twice: once
    (tmp_path / "dup.lib").write_text(MINI.replace("library (mini)", "library (dup)"))
    with pytest.raises(UserError, match=r"Liberty cell \w+ is defined in both .*ps_ff.lib and .*dup.lib"):
        read_liberty([tmp_path / "ps_ff.lib", tmp_path / "dup.lib"])
    with pytest.raises(UserError, match="no Liberty file given"):
        read_liberty([])


def test_simple_attribute_may_end_at_the_line_end():
    g = parse_liberty('library (x) {\n  a : 1\n  b : "q r"\n cell (Y) {\narea : 0.26244\n  pin (A) { direction : input; }\n }\n}\n')
    assert g.attrs == {"a": "1", "b": "q r"} and g.groups[0].attrs == {"area": "0.26244"}  # ASAP7 style
    assert g.groups[0].groups[0].attrs == {"direction": "input"}


def test_errors_are_user_errors(tmp_path, mini):
    with pytest.raises(UserError, match="does not exist"):
        read_liberty(tmp_path / "nope.lib")
    (tmp_path / "bad.lib").write_text("library (x) { cell (A) { area : 1; ")
    with pytest.raises(UserError):
        read_liberty(tmp_path / "bad.lib")
    (tmp_path / "bad.lib.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(UserError, match="cannot read"):
        read_liberty(tmp_path / "bad.lib.gz")
    with pytest.raises(UserError, match="not in Liberty"):
        mini.cell("NOR9")
    with pytest.raises(UserError, match="no timing arc"):
        mini.cell("HALF").arcs_from("A")
    (tmp_path / "notmpl.lib").write_text(MINI.replace("cell_rise (slew_load)", "cell_rise (nosuch)"))
    with pytest.raises(UserError, match="nosuch"):
        read_liberty(tmp_path / "notmpl.lib")


def test_parse_complex_attributes_and_comments():
    g = parse_liberty('library (l) { /* c */ define (a, b, string); x : 1 ; y : "s t"; grp (q) { z : 2; } }')
    assert g.kind == "library" and g.args == ["l"]
    assert g.complex["define"] == [["a", "b", "string"]]
    assert g.attrs == {"x": "1", "y": "s t"}
    assert g.sub("grp")[0].attrs["z"] == "2"


# ---- function conversion: random expressions, all Liberty spellings, truth tables agree

PINS = ("A", "B", "C")


@st.composite
def exprs(draw, depth=3):
    """(liberty text, reference python evaluator) pairs."""
    if depth == 0 or draw(st.booleans()):
        p = draw(st.sampled_from(PINS + ("0", "1")))
        return p, (lambda env, p=p: env[p] if p in env else int(p))
    kind = draw(st.sampled_from(["not!", "not'", "and*", "and&", "andsp", "or+", "or|", "xor"]))
    l_txt, l_fn = draw(exprs(depth - 1))
    if kind == "not!":
        return f"!({l_txt})", lambda env: 1 - l_fn(env)
    if kind == "not'":
        return f"({l_txt})'", lambda env: 1 - l_fn(env)
    r_txt, r_fn = draw(exprs(depth - 1))
    op = {"and*": "*", "and&": "&", "andsp": " ", "or+": "+", "or|": "|", "xor": "^"}[kind]
    fn = {"*": lambda x, y: x & y, "&": lambda x, y: x & y, " ": lambda x, y: x & y,
          "+": lambda x, y: x | y, "|": lambda x, y: x | y, "^": lambda x, y: x ^ y}[op]
    return f"({l_txt}){op}({r_txt})", lambda env: fn(l_fn(env), r_fn(env))


@settings(max_examples=150, deadline=None)
@given(exprs())
def test_function_conversion_truth_table(e):
    txt, ref = e
    py = liberty_function_to_python(txt)
    for bits in itertools.product((0, 1), repeat=3):
        env = dict(zip(PINS, bits))
        assert eval(py, {}, dict(env)) & 1 == ref(env), (txt, py)


def test_function_precedence_like_opensta():
    # NOT > XOR > AND > OR
    cases = {"A+B*C": lambda a, b, c: a | (b & c), "A*B^C": lambda a, b, c: a & (b ^ c),
             "!A B": lambda a, b, c: (1 - a) & b, "A' + B'": lambda a, b, c: (1 - a) | (1 - b),
             "A^B+C": lambda a, b, c: (a ^ b) | c}
    for txt, ref in cases.items():
        py = liberty_function_to_python(txt)
        for a, b, c in itertools.product((0, 1), repeat=3):
            assert eval(py, {}, {"A": a, "B": b, "C": c}) & 1 == ref(a, b, c), txt
    with pytest.raises(UserError):
        liberty_function_to_python("(A + B")


@pytest.mark.skipif(not SKY130.is_file(), reason="sky130 Liberty not available")
def test_sky130_spot_values():
    lib = read_liberty(SKY130)
    assert lib.voltage == pytest.approx(1.8)
    c = lib.cell("sky130_fd_sc_hd__nand2_1")
    assert c.area == pytest.approx(3.7536)
    assert c.leakage_w == pytest.approx(0.00211796e-9)  # 1nW units
    assert c.pins["A"].cap_ff == pytest.approx(2.315)  # 1pf units
    a = c.arcs_from("A")[0]
    assert a.timing_sense == "negative_unate"
    assert a.cell_rise.values[0, 0] == pytest.approx(24.0063)  # 0.0240063 ns
    assert a.cell_rise.index_1[0] == pytest.approx(10.0) and a.cell_rise.index_2[0] == pytest.approx(0.5)
    cells = lib.logic_cells()
    assert "sky130_fd_sc_hd__dfxtp_1" not in cells and "sky130_fd_sc_hd__ha_1" not in cells
    env = {"A1": 1, "A2": 0, "B1": 0}
    assert eval(cells["sky130_fd_sc_hd__a21oi_1"].function, {}, env) & 1 == 1 - ((1 & 0) | 0)


def test_disk_cache_roundtrip_and_corruption(tmp_path, monkeypatch):
    from halo_opt.hardware import liberty as L

    monkeypatch.setenv("HALO_OPT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m.lib").write_text(MINI)
    L._read_cached.cache_clear()
    first = read_liberty(tmp_path / "m.lib")
    pk = list((tmp_path / "cache" / "liberty").glob("*.json.gz"))
    assert len(pk) == 1 and not list((tmp_path / "cache" / "liberty").glob("*.pkl"))
    L._read_cached.cache_clear()
    second = read_liberty(tmp_path / "m.lib")  # from the JSON cache
    assert second is not first and L._encode(second) == L._encode(first)  # every field round-trips
    a1, a2 = first.cell("NAND2").arcs["Y"][0], second.cell("NAND2").arcs["Y"][0]
    np.testing.assert_array_equal(a2.cell_rise.values, a1.cell_rise.values)
    assert a2.cell_rise.values.dtype == np.float64 and isinstance(a2, L.Arc)
    # a cache entry naming a type outside the Liberty model is rejected (parsed again), never run
    pk[0].write_bytes(gzip.compress(b'{"__t": "Path", "args": ["/etc"]}'))
    L._read_cached.cache_clear()
    assert read_liberty(tmp_path / "m.lib").cell("NAND2").area == 2.5
    pk[0].write_bytes(b"garbage")
    L._read_cached.cache_clear()
    third = read_liberty(tmp_path / "m.lib")  # corrupt entry: parsed again and rewritten
    assert third.cell("NAND2").area == 2.5 and pk[0].read_bytes() != b"garbage"
    L._read_cached.cache_clear()
