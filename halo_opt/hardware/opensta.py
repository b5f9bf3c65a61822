"""OpenSTA reference for static, weight-conditioned timing (``set_case_analysis``).

:func:`opensta_static_delays` runs ``sta`` once on a structural Verilog netlist mapped to a
Liberty library (one or several files): ``read_liberty`` per file, ``read_verilog``, ``link_design``, ``set_load 0`` on every
net, then per case ``set_case_analysis 0|1`` on each given pin and
``find_timing_paths -unconstrained -path_delay max`` (the worst arrival at any endpoint;
primary inputs arrive at 0 with 0 slew, outputs have no external load).

``set_load 0 [get_nets *]`` replaces the library's ``default_wire_load`` estimate (which
OpenSTA applies otherwise) by zero wire capacitance and resistance, so the numbers are pure
NLDM pin-load timing — the configuration :class:`~halo_opt.hardware.delay.LibertyDelay`
reproduces with ``input_slew_ps = output_load_ff = wire_ff_per_fanout = 0``.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError

_SIGNED = re.compile(r"\b(input|output|inout|wire|reg)(\s+)signed\b\s*")


def sta_path() -> str | None:
    """Path of the OpenSTA executable, or None when it is not installed."""
    return shutil.which("sta")


def opensta_static_delays(verilog: str | Path, liberty, cases: list[dict[str, int]], top: str = "mac", timeout_s: float = 600) -> list[float]:
    """Worst unconstrained arrival (ps) for each case ``{pin: 0|1}`` (e.g. ``{"w[0]": 1, ...}``).

    ``verilog``: a path to, or the text of, a structural netlist of module ``top`` written by
    Yosys ``write_verilog -noattr`` (the word ``signed`` is removed from declarations, which
    OpenSTA's reader rejects). ``liberty``: a .lib or .lib.gz path, or a list of them (all are
    read, e.g. ASAP7's four files). All cases run in one ``sta`` session.
    """
    from .liberty import liberty_paths

    exe = sta_path()
    if exe is None:
        raise UserError("OpenSTA ('sta') is not installed; install the Debian package opensta")
    if isinstance(verilog, Path) or "module" not in str(verilog):
        if not Path(verilog).is_file():
            raise UserError(f"Verilog netlist {verilog} does not exist; pass a structural netlist (Yosys write_verilog -noattr)")
        text = Path(verilog).read_text()
    else:
        text = str(verilog)
    text = _SIGNED.sub(lambda m: m.group(1) + " ", text)
    libs = liberty_paths(liberty)
    with tempfile.TemporaryDirectory(prefix="halo_sta_") as d:
        (Path(d) / "net.v").write_text(text)
        tcl = []
        for j, lib in enumerate(libs):
            raw = lib.read_bytes()
            (Path(d) / f"lib{j}.lib").write_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            tcl.append(f"read_liberty lib{j}.lib")
        tcl += ["read_verilog net.v", f"link_design {top}", "set_load 0 [get_nets *]"]
        for k, case in enumerate(cases):
            for pin, v in case.items():
                if v not in (0, 1):
                    raise UserError(f"case value for {pin} must be 0 or 1, not {v!r}")
                tcl.append(f"set_case_analysis {v} [get_ports {{{pin}}}]")
            tcl.append("set _pe [find_timing_paths -unconstrained -path_delay max]")
            tcl.append(f'if {{[llength $_pe]}} {{ puts "HALO_CASE {k} [[lindex $_pe 0] data_arrival_time]" }} else {{ puts "HALO_CASE {k} 0" }}')
        (Path(d) / "run.tcl").write_text("\n".join(tcl) + "\n")
        try:
            r = subprocess.run([exe, "-no_init", "-no_splash", "-exit", "run.tcl"], cwd=d, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise UserError(f"OpenSTA did not finish within {timeout_s:.0f} s; check fewer cases at a time") from None
    out = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"^HALO_CASE (\d+) (\S+)$", r.stdout, re.M)}
    black = re.findall(r"module (\S+) not found", r.stdout + r.stderr)
    if black:
        raise UserError(f"OpenSTA: cell {black[0]} is not in {', '.join(p.name for p in libs)}; pass the Liberty file the netlist was mapped with")
    if len(out) != len(cases):
        raise UserError(f"OpenSTA failed (exit {r.returncode}): {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return [out[k] * 1e12 for k in range(len(cases))]


def opensta_static_delay(verilog: str | Path, liberty, weight_bits: dict[str, int], top: str = "mac") -> float:
    """Worst unconstrained arrival (ps) with ``set_case_analysis`` on ``weight_bits`` {pin: 0|1}."""
    return opensta_static_delays(verilog, liberty, [weight_bits], top)[0]


def weight_cases(codes, wbits: int, port: str = "w") -> list[dict[str, int]]:
    """``{"w[b]": bit}`` case dicts of two's complement codes (for :func:`opensta_static_delays`)."""
    return [{f"{port}[{b}]": (int(c) >> b) & 1 for b in range(wbits)} for c in codes]
