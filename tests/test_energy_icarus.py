"""Per-net toggle counts against an independent event-driven simulator: Icarus Verilog.

The netlist is written as structural Verilog (one ``assign`` module per cell type, from its
function: Yosys gate models for the built-in netlist, the Liberty ``function`` for the
sky130-mapped one), driven with the same (a, p) stream per held weight code, simulated with zero
delay and dumped to VCD. Within a time step a zero-delay simulator may change a net several
times; the VCD value at the end of each step is the vector's final value, which is what
halo-opt counts (:mod:`halo_opt.hardware.energy`). Counts must be equal on every net.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from halo_opt.hardware.energy import toggle_counts
from halo_opt.hardware.netlist import CONST0, CONST1, Netlist

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                                reason="Icarus Verilog (iverilog, vvp) not installed")

from shared_files import SKY130  # noqa: E402  (beside the clone: REPO/../shared)


def _vexpr(function: str) -> str:
    """Python bitwise cell function -> Verilog expression (``& | ^ ~`` and parentheses are shared)."""
    return re.sub(r"\b1\b", "1'b1", re.sub(r"\b0\b", "1'b0", function))


def write_testbench(net: Netlist, codes, a_seq, p_seq, vcd: str) -> str:
    """Verilog: a module per cell type, a testbench instantiating every gate on wires ``n<id>``,
    holding ``w`` at each code for one block of ``len(a_seq)`` vectors (one per ns)."""
    mods = {name: f"cell_{i}" for i, name in enumerate(sorted(net.cells))}
    lines = ["`timescale 1ns/1ns"]
    for name, mod in mods.items():
        c = net.cells[name]
        ports = ", ".join([f"input {p}" for p in c.inputs] + [f"output {c.output}"])
        lines.append(f"module {mod}({ports}); assign {c.output} = {_vexpr(c.function)}; endmodule")
    width = {p: len(v) for p, v in net.inputs.items()}
    lines.append("module tb;")
    lines += [f"  reg [{width[p] - 1}:0] {p};" for p in ("a", "w", "p")]
    used = sorted({n for g in net.gates for n in (*g.inputs, g.output)} | set(net.input_nets) | {CONST0, CONST1})
    lines += [f"  wire n{n};" for n in used]
    lines += [f"  assign n{CONST0} = 1'b0;", f"  assign n{CONST1} = 1'b1;"]
    for port, nets in net.inputs.items():
        lines += [f"  assign n{n} = {port}[{b}];" for b, n in enumerate(nets) if n > CONST1]
    for gi, g in enumerate(net.gates):
        c = net.cells[g.cell]
        conns = ", ".join(f".{pin}(n{n})" for pin, n in zip((*c.inputs, c.output), (*g.inputs, g.output)))
        lines.append(f"  {mods[g.cell]} g{gi} ({conns});")
    lines += ["  initial begin", f'    $dumpfile("{vcd}");', "    $dumpvars(0, tb);"]
    ma, mw, mp = ((1 << width[p]) - 1 for p in ("a", "w", "p"))
    for c in codes:
        lines.append(f"    #1 w = {width['w']}'d{int(c) & mw};")
        lines += [f"    #1 a = {width['a']}'d{int(a) & ma}; p = {width['p']}'d{int(p) & mp};" for a, p in zip(a_seq, p_seq)]
    lines += ["    #1 $finish;", "  end", "endmodule"]
    return "\n".join(lines) + "\n"


def vcd_final_values(path: Path) -> tuple[dict[str, list[tuple[int, str]]], int]:
    """``{wire name: [(time, value)]}`` of the scalar wires ``n<id>``, last change per time step."""
    ids: dict[str, str] = {}
    changes: dict[str, dict[int, str]] = {}
    t, body = 0, False
    for line in path.read_text().splitlines():
        tok = line.split()
        if not tok:
            continue
        if not body:
            if tok[0] == "$var" and re.fullmatch(r"n\d+", tok[4]) and tok[2] == "1":
                ids[tok[3]] = tok[4]
            body = tok[0] == "$enddefinitions"
            continue
        if tok[0].startswith("#"):
            t = int(tok[0][1:])
        elif tok[0][0] in "01xz" and tok[0][1:] in ids:
            changes.setdefault(ids[tok[0][1:]], {})[t] = tok[0][0]  # later change in a step wins
    return {n: sorted(c.items()) for n, c in changes.items()}, t


def icarus_toggles(net: Netlist, codes, a_seq, p_seq, tmp: Path) -> np.ndarray:
    """``[n_nets, n_codes]`` toggles between consecutive vectors of each code block, from the VCD."""
    (tmp / "tb.v").write_text(write_testbench(net, codes, a_seq, p_seq, str(tmp / "tb.vcd")))
    subprocess.run(["iverilog", "-o", str(tmp / "tb.vvp"), str(tmp / "tb.v")], check=True, capture_output=True, timeout=300)
    subprocess.run(["vvp", "-n", str(tmp / "tb.vvp")], check=True, capture_output=True, timeout=300, cwd=tmp)
    changes, _ = vcd_final_values(tmp / "tb.vcd")
    N, block = len(a_seq), len(a_seq) + 1
    out = np.zeros((net.n_nets, len(codes)), np.int64)
    for name, ch in changes.items():
        times = np.array([t for t, _ in ch])
        vals = np.array([v for _, v in ch])
        for ci in range(len(codes)):
            t_vec = ci * block + 2 + np.arange(N)  # vector j of code ci is applied at this time
            v = vals[np.searchsorted(times, t_vec, side="right") - 1]  # value at the end of each step
            assert not np.isin(v, ["x", "z"]).any(), f"{name} is x/z during code block {ci}"
            out[int(name[1:]), ci] = int((v[1:] != v[:-1]).sum())
    return out


def _check(net: Netlist, codes, tmp_path: Path, n: int = 96, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    spec = net.meta["spec"]
    a = rng.integers(-(1 << (spec["abits"] - 1)), 1 << (spec["abits"] - 1), n)
    p = rng.integers(-(1 << (spec["acc"] - 1)), 1 << (spec["acc"] - 1), n)
    ours = toggle_counts(net, codes, a, p)
    ref = icarus_toggles(net, codes, a, p, tmp_path)
    live = sorted({g.output for g in net.gates} | {x for x in net.input_nets if x > CONST1})
    assert ref[live].sum() > 0
    bad = [(nn, ci) for nn in live for ci in range(len(codes)) if ours[nn, ci] != ref[nn, ci]]
    assert not bad, f"{len(bad)} (net, code) toggle counts differ, e.g. {bad[:5]}: ours {[ours[b] for b in bad[:5]]}, icarus {[ref[b] for b in bad[:5]]}"


CODES = [0, 1, -128, 85]


@pytest.mark.parametrize("arch", ["array", "booth"])
def test_toggles_equal_icarus_builtin(arch, tmp_path):
    from halo_opt.hardware.verilog import MacSpec
    from halo_opt.hardware.yosys import synthesize_mac

    _check(synthesize_mac(MacSpec(8, 8, True, 24, arch)), CODES, tmp_path)


@pytest.mark.skipif(not SKY130.is_file(), reason="sky130 Liberty not available (../shared/liberty)")
@pytest.mark.parametrize("arch", ["array", "booth"])
def test_toggles_equal_icarus_sky130(arch, tmp_path):
    from halo_opt.hardware.verilog import MacSpec
    from halo_opt.hardware.yosys import synthesize_mac

    _check(synthesize_mac(MacSpec(8, 8, True, 24, arch), SKY130), [0, 7, -1, -86], tmp_path, seed=1)


def test_vcd_parser_keeps_last_change_of_a_step(tmp_path):
    vcd = tmp_path / "g.vcd"
    vcd.write_text("$var wire 1 ! n5 $end\n$var wire 4 \" a $end\n$enddefinitions $end\n#1\n0!\n#2\n1!\n0!\nb1010 \"\n#3\n1!\n")
    ch, t_end = vcd_final_values(vcd)
    assert ch == {"n5": [(1, "0"), (2, "0"), (3, "1")]} and t_end == 3
