"""Yosys JSON parser: renumbering, topological order, aliasing, and every rejection path."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.hardware.netlist import CONST0, CONST1, Cell
from halo_opt.hardware.simulate import simulate
from halo_opt.hardware.yosys_json import parse_yosys_json

# Yosys bit ids: a = 2,3  w = 4,5  p = 6..9; y is set per test.
A, W, P = [2, 3], [4, 5], [6, 7, 8, 9]


def module(y_bits, cells, extra_ports=None):
    ports = {
        "a": {"direction": "input", "bits": A},
        "w": {"direction": "input", "bits": W},
        "p": {"direction": "input", "bits": P},
        "y": {"direction": "output", "bits": y_bits},
        **(extra_ports or {}),
    }
    cells_json = {
        name: {"type": t, "connections": {pin: [b] for pin, b in conn.items()}} for name, (t, conn) in cells.items()
    }
    netnames = {"a": {"bits": A, "hide_name": 0}, "mid": {"bits": [20, 21], "hide_name": 0}}
    return {"creator": "test", "modules": {"mac": {"attributes": {"top": "00000000000000000000000000000001"},
                                                    "ports": ports, "cells": cells_json, "netnames": netnames}}}


# y0 = a0 & w0 ; y1 = (a0 & w0) ^ p1 ; y2 = p2 (alias) ; y3 = 0 (constant)
GOOD = module([10, 11, 8, "0"], {
    # listed consumer-first, so the parser has to sort them
    "g_xor": ("$_XOR_", {"A": 10, "B": 7, "Y": 11}),
    "g_and": ("$_AND_", {"A": 2, "B": 4, "Y": 10}),
})


def test_parse_renumbers_sorts_and_aliases():
    net = parse_yosys_json(GOOD)
    net.validate()
    assert net.inputs == {"a": [2, 3], "w": [4, 5], "p": [6, 7, 8, 9]}
    assert [g.name for g in net.gates] == ["g_and", "g_xor"]  # topological
    assert net.outputs["y"][2] == net.inputs["p"][2] and net.outputs["y"][3] == CONST0
    assert net.n_nets == 12 and net.meta["library"] == "yosys-builtin"
    assert net.net_names[2] == "a[0]"
    rng = np.random.default_rng(0)
    a, w, p = rng.integers(0, 4, 500), rng.integers(0, 4, 500), rng.integers(0, 16, 500)
    y = simulate(net, {"a": a, "w": w, "p": p})["y"]
    b0 = (a & 1) & (w & 1)
    assert np.array_equal(y, b0 | ((b0 ^ ((p >> 1) & 1)) << 1) | (p & 4))


def test_output_tied_to_constant_one_and_input():
    data = module(["1", 2, 3, 6], {})
    net = parse_yosys_json(data)
    assert net.outputs["y"] == [CONST1, 2, 3, 6] and net.gates == []
    y = simulate(net, {"a": np.arange(4), "w": 0, "p": 1})["y"]
    assert np.array_equal(y, 1 | (np.arange(4) << 1) | 8)


def test_liberty_cells_from_dict():
    cells = {"NAND2X1": Cell("NAND2X1", ("A", "B"), "Y", "~(A & B)"), "INVX1": Cell("INVX1", ("A",), "Y", "~A")}
    data = module([11, 10, "0", "0"], {"u1": ("NAND2X1", {"A": 2, "B": 4, "Y": 10}), "u2": ("INVX1", {"A": 10, "Y": 11})})
    net = parse_yosys_json(data, cells=cells, library="tinylib")
    assert net.meta["library"] == "tinylib" and set(net.cells) == {"NAND2X1", "INVX1"}
    y = simulate(net, {"a": [0, 1, 1], "w": [1, 0, 1], "p": 0})["y"]
    assert list(y) == [2, 2, 1]
    with pytest.raises(UserError, match=r"cell g_xor .* type \$_XOR_, which is not in the Liberty library tinylib"):
        parse_yosys_json(GOOD, cells=cells, library="tinylib")


def test_loop_names_a_net_on_it():
    data = module([22, "0", "0", "0"], {
        "g3": ("$_NOT_", {"A": 20, "Y": 22}),  # downstream of the loop, not on it: the walk starts here
        "g1": ("$_AND_", {"A": 2, "B": 21, "Y": 20}),
        "g2": ("$_OR_", {"A": 20, "B": 4, "Y": 21}),
    })
    with pytest.raises(UserError, match=r"combinational loop .* through net mid\[[01]\]"):
        parse_yosys_json(data)


def test_unknown_cell_names_type_and_library():
    data = module([10, "0", "0", "0"], {"u": ("$_DFF_P_", {"C": 2, "D": 4, "Q": 10})})
    with pytest.raises(UserError, match=r"cell u .* type \$_DFF_P_, which is not in the Yosys internal gate library"):
        parse_yosys_json(data)


@pytest.mark.parametrize("port", ["a", "w", "p", "y"])
def test_missing_port(port):
    data = copy.deepcopy(GOOD)
    del data["modules"]["mac"]["ports"][port]
    with pytest.raises(UserError, match=f"has no port '{port}'"):
        parse_yosys_json(data)


def test_extra_port_and_wrong_direction():
    with pytest.raises(UserError, match="unexpected port"):
        parse_yosys_json(module([2, 3, 4, 5], {}, {"clk": {"direction": "input", "bits": [30]}}))
    data = copy.deepcopy(GOOD)
    data["modules"]["mac"]["ports"]["w"]["direction"] = "output"
    with pytest.raises(UserError, match="port 'w' .* expected input"):
        parse_yosys_json(data)


def test_x_bits_rejected():
    with pytest.raises(UserError, match=r"pin B of cell g .* undefined 'x'"):
        parse_yosys_json(module([10, "0", "0", "0"], {"g": ("$_AND_", {"A": 2, "B": "x", "Y": 10})}))
    with pytest.raises(UserError, match=r"output bit y\[1\] .* undefined 'x'"):
        parse_yosys_json(module([2, "x", "0", "0"], {}))


def test_undriven_and_multiply_driven():
    with pytest.raises(UserError, match="has no driver"):
        parse_yosys_json(module([10, "0", "0", "0"], {"g": ("$_AND_", {"A": 2, "B": 55, "Y": 10})}))
    with pytest.raises(UserError, match=r"output bit y\[0\] .* has no driver"):
        parse_yosys_json(module([56, "0", "0", "0"], {}))
    with pytest.raises(UserError, match="driven by both g1 and g2"):
        parse_yosys_json(module([10, "0", "0", "0"], {"g1": ("$_AND_", {"A": 2, "B": 4, "Y": 10}),
                                                      "g2": ("$_OR_", {"A": 2, "B": 4, "Y": 10})}))
    with pytest.raises(UserError, match="primary input"):
        parse_yosys_json(module([2, "0", "0", "0"], {"g": ("$_NOT_", {"A": 4, "Y": 3})}))


def test_not_a_yosys_file(tmp_path):
    with pytest.raises(UserError, match="no 'modules'"):
        parse_yosys_json({"foo": 1})
    bad = tmp_path / "n.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        parse_yosys_json(bad)
    with pytest.raises(UserError, match="not found"):
        parse_yosys_json(tmp_path / "missing.json")


def test_validate_catches_broken_invariants():
    from dataclasses import replace

    net = parse_yosys_json(GOOD)
    with pytest.raises(ValueError, match="not topological"):
        replace(net, gates=net.gates[::-1]).validate()
    with pytest.raises(ValueError, match="already driven"):
        replace(net, gates=[net.gates[0], replace(net.gates[1], output=net.gates[0].output)]).validate()
    with pytest.raises(ValueError, match="missing from netlist.cells"):
        replace(net, cells={}).validate()
