"""MAC spec, Verilog, Yosys synthesis (cached), user netlists and the functional check."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from halo_opt.errors import UserError
from halo_opt.hardware.check import functional_check, sample_psums
from halo_opt.hardware.netlist import Cell
from halo_opt.hardware.simulate import simulate
from halo_opt.hardware.verilog import MacSpec, mac_verilog, strip_signed
from halo_opt.hardware.yosys import read_user_netlist, run_yosys, synthesize, synthesize_mac

from shared_files import SKY130  # noqa: E402  (beside the clone: REPO/../shared)
needs_sky130 = pytest.mark.skipif(not SKY130.is_file(), reason="sky130 Liberty file not present")

SPECS = [
    MacSpec(8, 8, True, 24, "array"),
    MacSpec(8, 8, True, 24, "booth"),
    MacSpec(4, 4, False, 12, "array"),
    MacSpec(4, 8, False, 16, "booth"),
    MacSpec(3, 5, True, 10, "array"),
    MacSpec(2, 2, True, 4, "booth"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_synthesized_macs_pass_the_check(spec):
    net = synthesize_mac(spec)  # functional_check runs inside
    net.validate()
    assert {p: len(n) for p, n in {**net.inputs, **net.outputs}.items()} == spec.port_widths
    assert net.meta["library"] == "yosys-builtin" and len(net.meta["netlist_sha256"]) == 64
    assert all(g.cell.startswith("$_") for g in net.gates)
    assert functional_check(net, spec) == 2 ** (spec.abits + spec.wbits) * min(64, 2**spec.acc)


@pytest.mark.parametrize("pick", range(4))
def test_one_altered_gate_is_rejected(pick):
    spec = SPECS[0]
    net = synthesize_mac(spec)
    ands = [i for i, g in enumerate(net.gates) if g.cell == "$_AND_"]
    i = ands[pick * len(ands) // 4]  # deterministic: spread over the netlist
    bad = replace(net, gates=[replace(g, cell="$_OR_") if k == i else g for k, g in enumerate(net.gates)],
                  cells={**net.cells, "$_OR_": net.cells.get("$_OR_") or Cell("$_OR_", ("A", "B"), "Y", "A | B")})
    with pytest.raises(UserError, match=r"netlist fails y = p \+ a\*w at a=-?\d+ w=-?\d+ p=-?\d+: expected -?\d+, got -?\d+") as e:
        functional_check(bad, spec)
    m = re.search(r"a=(-?\d+) w=(-?\d+) p=(-?\d+): expected (-?\d+), got (-?\d+)", str(e.value))
    a, w, p, exp, got = map(int, m.groups())
    assert exp == ((p + a * w + 2**23) % 2**24) - 2**23  # the reported vector is real
    assert simulate(bad, {"a": [a], "w": [w], "p": [p]}, signed=True)["y"][0] == got != exp
    assert simulate(net, {"a": [a], "w": [w], "p": [p]}, signed=True)["y"][0] == exp


def test_check_rejects_wrong_spec():
    net = synthesize_mac(SPECS[2])  # unsigned 4x4
    with pytest.raises(UserError, match="netlist fails"):
        functional_check(net, replace(SPECS[2], signed=True))
    with pytest.raises(UserError, match="port p is 12 bits, but the MAC spec .* needs 16 bits"):
        functional_check(net, replace(SPECS[2], acc=16))


def test_psum_samples_cover_corners():
    s = sample_psums(24, True, 64, seed=0)
    assert len(set(s.tolist())) == 64 and {0, -1, 2**23 - 1, -(2**23)} <= set(s.tolist())
    u = sample_psums(4, False, 64, seed=0)
    assert sorted(u.tolist()) == list(range(16))  # fewer codes than samples: all of them
    assert np.array_equal(sample_psums(24, True, 64, seed=3), sample_psums(24, True, 64, seed=3))


@pytest.mark.parametrize("kw, msg", [
    (dict(wbits=9), "--wbits 9 is out of range 2..8"),
    (dict(abits=1), "--abits 1 is out of range 2..8"),
    (dict(acc=15), "--acc 15 is out of range 16..48"),
    (dict(acc=49), "--acc 49 is out of range 16..48"),
    (dict(arch="tree"), "--arch 'tree' is not one of array, booth, wallace, dadda"),
    (dict(wbits=4.0), "--wbits 4.0 is not an integer"),
])
def test_bad_spec(kw, msg):
    with pytest.raises(UserError, match=re.escape(msg)):
        MacSpec(**kw)


def test_verilog_and_strip_signed():
    v = mac_verilog(MacSpec(8, 8, True, 24))
    assert "input  wire signed [7:0] a" in v and "output wire signed [23:0] y" in v and "assign y = p + mv;" in v
    assert "signed" not in mac_verilog(MacSpec(8, 8, False, 24)).split("\n", 1)[1]
    assert strip_signed("  input signed [7:0] a;\n  wire signed [7:0] a;\n  output signed y;\n") == \
        "  input [7:0] a;\n  wire [7:0] a;\n  output y;\n"


def test_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("HALO_OPT_CACHE", str(tmp_path))
    spec = MacSpec(2, 3, False, 5, "array")
    first, second = synthesize(spec), synthesize(spec)
    assert not first.cached and second.cached and first.folder == second.folder
    assert first.folder.parent == tmp_path / "netlists"
    assert {p.name for p in first.folder.iterdir()} == {"mac.v", "run.ys", "netlist.json", "netlist.v", "yosys.log", "meta.json"}
    assert "signed" not in first.verilog_path.read_text()
    assert synthesize(replace(spec, arch="booth")).folder != first.folder


def test_shipped_netlists_are_what_yosys_makes(tmp_path, monkeypatch):
    """Every entry of data/netlists is read in place of synthesis only under its own key; with the
    Yosys version it was made with, a fresh synthesis gives the same netlist byte for byte (else
    its key cannot match, and the MAC is synthesized anew)."""
    from halo_opt.hardware.yosys import shipped_netlists, yosys_version

    monkeypatch.setenv("HALO_OPT_CACHE", str(tmp_path))
    seeds = sorted(p for p in shipped_netlists().iterdir() if p.is_dir())
    assert seeds, "data/netlists ships the demo's default MAC"
    for seed in seeds:
        meta = json.loads((seed / "meta.json").read_text())
        spec = MacSpec(**meta["inputs"]["spec"])
        hit = synthesize(spec, stage=meta["inputs"]["stage"])
        if meta["inputs"]["yosys"] != yosys_version():
            assert hit.folder != seed
            continue
        assert hit.cached and hit.folder == seed and hit.key == seed.name == meta["key"]
        fresh = synthesize(spec, stage=meta["inputs"]["stage"], use_cache=False)
        assert not fresh.cached and fresh.folder.parent == tmp_path / "netlists" and fresh.key == seed.name
        assert fresh.json_path.read_bytes() == (seed / "netlist.json").read_bytes()
        assert fresh.verilog_path.read_bytes() == (seed / "netlist.v").read_bytes()


def test_yosys_error_is_a_user_error():
    with pytest.raises(UserError, match=r"Yosys failed: bad.v:1: ERROR: syntax error"):
        run_yosys("read_verilog bad.v\n", {"bad.v": b"module x(input a; endmodule\n"}, [])


def test_user_netlist_json_and_verilog(tmp_path):
    spec = SPECS[4]
    res = synthesize(spec)
    for path in (res.json_path, res.verilog_path):
        net = read_user_netlist(path)
        functional_check(net, spec)
    # a structural Verilog netlist with another module name and an assign alias
    text = res.verilog_path.read_text().replace("module mac(", "module my_mac(")
    text = text.replace("endmodule", "  wire spare;\n  assign spare = a[0];\nendmodule")
    (tmp_path / "mine.v").write_text(text)
    functional_check(read_user_netlist(tmp_path / "mine.v"), spec)
    # hierarchical: a wrapper instantiating it (flattened, top named explicitly)
    wrapper = ("module wrap(input signed [4:0] a, input signed [2:0] w, input signed [9:0] p, output signed [9:0] y);\n"
               "  my_mac u0 (.a(a), .w(w), .p(p), .y(y));\nendmodule\n")
    (tmp_path / "hier.v").write_text(text + wrapper)
    net = read_user_netlist(tmp_path / "hier.v", top="wrap")
    assert net.module == "wrap"
    functional_check(net, spec)
    (tmp_path / "beh.v").write_text("module mac(input [1:0] a, w, input [3:0] p, output [3:0] y); assign y = p + a*w; endmodule\n")
    with pytest.raises(UserError, match=r"type \$(add|mul|alu)"):
        read_user_netlist(tmp_path / "beh.v")


def tiny_liberty() -> str:
    """A 6-cell Liberty library with 2x2 NLDM tables (ABC needs timing to map)."""
    def tab(kind, v):
        return f'{kind} (t2) {{ values ("{v}, {v * 1.5}", "{v * 1.2}, {v * 1.8}"); }}'
    out = ["library (tiny) {", '  delay_model : table_lookup; time_unit : "1ns"; capacitive_load_unit (1, pf);',
           "  lu_table_template (t2) { variable_1 : input_net_transition; variable_2 : total_output_net_capacitance;",
           '    index_1 ("0.01, 0.1"); index_2 ("0.001, 0.01"); }']
    for name, (pins, fn, area) in TINY_FUNCS.items():
        out.append(f"  cell ({name}) {{ area : {area};")
        out += [f"    pin ({p}) {{ direction : input; capacitance : 0.002; }}" for p in pins]
        out.append(f'    pin (Y) {{ direction : output; function : "{fn}";')
        out += [f'      timing () {{ related_pin : "{p}"; {tab("cell_rise", 0.05 * area)} {tab("cell_fall", 0.05 * area)} '
                f'{tab("rise_transition", 0.02)} {tab("fall_transition", 0.02)} }}' for p in pins]
        out.append("    } }")
    return "\n".join(out + ["}"]) + "\n"


TINY_FUNCS = {"BUF": ("A", "A", 1), "INV": ("A", "!A", 1), "NAND2": ("AB", "!(A*B)", 2), "NOR2": ("AB", "!(A+B)", 2),
              "XOR2": ("AB", "A^B", 4), "AOI21": ("ABC", "!((A*B)+C)", 3)}
TINY_CELLS = {
    "INV": Cell("INV", ("A",), "Y", "~A"),
    "NAND2": Cell("NAND2", ("A", "B"), "Y", "~(A & B)"),
    "NOR2": Cell("NOR2", ("A", "B"), "Y", "~(A | B)"),
    "XOR2": Cell("XOR2", ("A", "B"), "Y", "A ^ B"),
    "BUF": Cell("BUF", ("A",), "Y", "A"),
    "AOI21": Cell("AOI21", ("A", "B", "C"), "Y", "~((A & B) | C)"),
}


def test_liberty_mapping_with_a_tiny_library(tmp_path):
    lib = tmp_path / "tiny.lib"
    lib.write_text(tiny_liberty())
    spec = MacSpec(3, 3, True, 8, "array")
    net = synthesize_mac(spec, lib, cells=TINY_CELLS)
    assert net.meta["library"] == "tiny" and set(net.cells) <= set(TINY_CELLS)
    functional_check(read_user_netlist(net.meta["verilog_path"], lib, cells=TINY_CELLS), spec)


@needs_sky130
def test_sky130_mapping():
    spec = MacSpec(4, 4, True, 12, "booth")
    net = synthesize_mac(spec, SKY130)
    assert net.meta["library"] == "sky130_fd_sc_hd__tt_025C_1v80"
    assert all(g.cell.startswith("sky130_fd_sc_hd__") and "lpflow" not in g.cell for g in net.gates)
    v = Path(net.meta["verilog_path"]).read_text()
    assert "signed" not in v and "sky130_fd_sc_hd__" in v
    functional_check(read_user_netlist(net.meta["verilog_path"], SKY130), spec)
