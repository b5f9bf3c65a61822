"""Gate delay models: built-in logical effort (Yosys internal gates) and Liberty NLDM.

Both give, for every gate input pin, a list of :class:`ArcDelay` (one per timing sense) =
callable ``arc(out_rise: bool, in_slew_ps: ndarray) -> (delay_ps, out_slew_ps)`` plus the
arc's ``sense`` (``positive_unate`` / ``negative_unate`` / ``non_unate``: which input edge can
cause which output edge). :mod:`halo_opt.hardware.timing` combines them into path delays.

**Built-in (logical effort).** Sutherland, Sproull & Harris, *Logical Effort* (Morgan
Kaufmann 1999), ch. 1 and Table 4.1: a gate sized to drive like a unit inverter has input
capacitance ``g`` (logical effort, units of the unit inverter's input cap) per pin and delay

    d = τ · (p + h·g) = τ · (p + C_load)      with C_load = Σ_fanout-pins g_pin + output_load,

since ``h = C_load / g`` for a unit-drive gate. ``τ`` (ps) is the process time constant;
``FO4 = τ·(1 + 4) = 5τ``. Rise = fall, output slew is not modelled (0).

============  ======  ==========  =================================================
Yosys cell     p (τ)   g per pin   structure assumed (Table 4.1 / two-stage sums)
============  ======  ==========  =================================================
$_NOT_          1      1           inverter
$_BUF_          2      1           inverter pair
$_NAND_         2      4/3         NAND2
$_NOR_          2      5/3         NOR2
$_AND_          3      4/3         NAND2 + inverter (parasitics add)
$_OR_           3      5/3         NOR2 + inverter
$_ANDNOT_       3      5/3         NOR2 with an input inverter (A & ~B = NOR(~A, B))
$_ORNOT_        3      4/3         NAND2 with an input inverter (A | ~B = NAND(~A, B))
$_XOR_/XNOR_    4      4           XOR2 (Table 4.1)
$_NMUX_         4      2           2:1 inverting multiplexer (tristate mux, p = 2n)
$_MUX_          5      2           NMUX + output inverter
$_AOI3_/OAI3_   7/3    2, 2, 5/3   AOI21 / OAI21 (C pin 5/3 resp. 4/3; sized as in ch. 4)
$_AOI4_/OAI4_   4      2           AOI22 / OAI22 (Table 4.1)
============  ======  ==========  =================================================

The default ``τ = 16 ps`` puts ``FO4 = 80 ps``, close to the FO4 of the SkyWater 130 nm
``sky130_fd_sc_hd__inv_1`` at tt/25 °C/1.8 V computed from its Liberty NLDM tables
(:func:`fo4_ps`: 80.9 ps, see ``benchmarks/characterize.md``); ``output_load`` = 1 unit
inverter (the accumulator register's input) per primary output bit.

**Liberty NLDM.** Delay and output slew are bilinear in (input slew, output load) with
linear extrapolation outside the table (the method OpenSTA uses). The load of a net for an
output edge is the sum of the fanout pins' ``rise_capacitance`` / ``fall_capacitance``
plus ``wire_ff_per_fanout`` per fanout pin plus ``output_load_ff`` per primary-output bit.
``timing`` groups of one pin pair stay separate arcs, each with its ``timing_sense`` (which
edge pairs it times) and its ``when`` condition; groups with the same sense and the same
``when`` merge by the worst delay and slew. Under case analysis
:func:`~halo_opt.hardware.timing.static_timing` disables an arc whose ``when`` is constant 0
and an unconditional (default) arc of a pin pair one of whose conditional arcs is constant 1,
as OpenSTA does (``sdf_cond`` only names the SDF condition; OpenSTA ignores it for timing, and
so does this model). OpenSTA agreement
needs ``input_slew_ps = 0``, ``output_load_ff = 0`` and ``wire_ff_per_fanout = 0`` with
OpenSTA's wire load switched off (``set_load 0`` on every net, see :mod:`.opensta`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction as F
from typing import Callable, Protocol

import numpy as np

from ..errors import UserError
from .liberty import Liberty, Table
from .netlist import Netlist

ArcFn = Callable[[bool, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class ArcDelay:
    """Delay of one input pin -> output arc: ``fn(out_rise, in_slew_ps) -> (delay_ps, out_slew_ps)``;
    ``when``: the arc's Liberty ``when`` condition as a Python expression over the cell's input
    pins (None: unconditional)."""

    sense: str
    fn: ArcFn
    when: str | None = None

    def __call__(self, out_rise: bool, in_slew_ps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fn(out_rise, in_slew_ps)


class DelayModel(Protocol):
    name: str
    input_slew_ps: float

    def gate_arcs(self, netlist: Netlist) -> list[list[list[ArcDelay]]]:
        """Per gate, per input pin (``Cell.inputs`` order): the arcs to the gate's output
        (one per timing sense; a Liberty pin may have a positive- and a negative-unate arc)."""
        ...


# ------------------------------------------------------------------------------ built-in

#: (parasitic delay p, logical effort g per input pin), units of τ / unit-inverter input cap.
LOGICAL_EFFORT: dict[str, tuple[F, tuple[F, ...]]] = {
    "$_NOT_": (F(1), (F(1),)),
    "$_BUF_": (F(2), (F(1),)),
    "$_NAND_": (F(2), (F(4, 3),) * 2),
    "$_NOR_": (F(2), (F(5, 3),) * 2),
    "$_AND_": (F(3), (F(4, 3),) * 2),
    "$_OR_": (F(3), (F(5, 3),) * 2),
    "$_ANDNOT_": (F(3), (F(5, 3),) * 2),
    "$_ORNOT_": (F(3), (F(4, 3),) * 2),
    "$_XOR_": (F(4), (F(4),) * 2),
    "$_XNOR_": (F(4), (F(4),) * 2),
    "$_NMUX_": (F(4), (F(2),) * 3),
    "$_MUX_": (F(5), (F(2),) * 3),
    "$_AOI3_": (F(7, 3), (F(2), F(2), F(5, 3))),
    "$_OAI3_": (F(7, 3), (F(2), F(2), F(4, 3))),
    "$_AOI4_": (F(4), (F(2),) * 4),
    "$_OAI4_": (F(4), (F(2),) * 4),
}


def _const_arc(d: float) -> ArcFn:
    def fn(out_rise: bool, in_slew: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.zeros_like(np.asarray(in_slew, dtype=np.float64))
        return z + d, z

    return fn


@dataclass
class BuiltinDelay:
    """Logical-effort delays for Yosys internal gates: ``d = τ·(p + C_load)`` ps (module doc)."""

    tau_ps: float = 16.0
    output_load: float = 1.0  # unit-inverter input caps per primary-output bit
    input_slew_ps: float = 0.0  # (slew is not modelled; kept for the DelayModel interface)

    @property
    def name(self) -> str:
        return f"builtin-logical-effort:tau={self.tau_ps:g}ps,out_load={self.output_load:g}"

    def load_units(self, netlist: Netlist) -> np.ndarray:
        """Per net: Σ fanout-pin logical efforts + output_load per output bit (unit-inverter caps)."""
        load = np.zeros(netlist.n_nets)
        for g in netlist.gates:
            _, gs = self._effort(g.cell)
            for k, n in enumerate(g.inputs):
                load[n] += float(gs[k])
        for n in netlist.output_nets:
            load[n] += self.output_load
        return load

    def _effort(self, cell: str) -> tuple[F, tuple[F, ...]]:
        if cell not in LOGICAL_EFFORT:
            raise UserError(f"built-in delay model has no entry for cell {cell!r}; map to Yosys internal gates or pass a Liberty file")
        return LOGICAL_EFFORT[cell]

    def gate_arcs(self, netlist: Netlist) -> list[list[list[ArcDelay]]]:
        load = self.load_units(netlist)
        out = []
        for g in netlist.gates:
            p, _ = self._effort(g.cell)
            d = self.tau_ps * (float(p) + load[g.output])
            out.append([[ArcDelay("non_unate", _const_arc(d))] for _ in g.inputs])
        return out


# ------------------------------------------------------------------------------ Liberty NLDM


def interp2(t: Table, x1: np.ndarray, x2: float) -> np.ndarray:
    """Bilinear interpolation of ``t`` at (input slew ``x1`` [array], load ``x2``), linear
    extrapolation beyond the axes (segment at the edge), constant along a length-1 axis."""
    x1 = np.asarray(x1, dtype=np.float64)
    v = t.values

    def axis(ix: np.ndarray, x):
        if len(ix) == 1:
            return np.zeros_like(x, dtype=np.intp), np.zeros_like(x, dtype=np.float64)
        i = np.clip(np.searchsorted(ix, x, side="right") - 1, 0, len(ix) - 2)
        return i, (x - ix[i]) / (ix[i + 1] - ix[i])

    i, u = axis(t.index_1, x1)
    j, w = axis(t.index_2, np.float64(x2))
    i1 = np.minimum(i + 1, v.shape[0] - 1)
    j1 = min(int(j) + 1, v.shape[1] - 1)
    j = int(j)
    lo = v[i, j] * (1 - w) + v[i, j1] * w
    hi = v[i1, j] * (1 - w) + v[i1, j1] * w
    return lo * (1 - u) + hi * u


@dataclass
class LibertyDelay:
    """NLDM delays from a :class:`Liberty` (ps, fF); loads from fanout pin capacitances."""

    liberty: Liberty
    input_slew_ps: float = 0.0
    output_load_ff: float = 0.0
    wire_ff_per_fanout: float = 0.0

    @property
    def name(self) -> str:
        return (f"liberty-nldm:{self.liberty.name},in_slew={self.input_slew_ps:g}ps,"
                f"out_load={self.output_load_ff:g}fF,wire={self.wire_ff_per_fanout:g}fF/fanout")

    def loads_ff(self, netlist: Netlist) -> np.ndarray:
        """``[n_nets, 2]`` load capacitance (fF) seen by a falling (0) / rising (1) driver."""
        load = np.zeros((netlist.n_nets, 2))
        for g in netlist.gates:
            lc = self.liberty.cell(g.cell)
            for pin, n in zip(netlist.cells[g.cell].inputs, g.inputs):
                p = lc.pins[pin]
                load[n] += (p.fall_cap_ff + self.wire_ff_per_fanout, p.rise_cap_ff + self.wire_ff_per_fanout)
        for n in netlist.output_nets:
            load[n] += self.output_load_ff
        return load

    def gate_arcs(self, netlist: Netlist) -> list[list[list[ArcDelay]]]:
        load = self.loads_ff(netlist)
        out = []
        for g in netlist.gates:
            lc = self.liberty.cell(g.cell)
            cell = netlist.cells[g.cell]
            arcs = []
            for pin in cell.inputs:
                la = lc.arcs_from(pin, cell.output)
                arcs_pin: list[ArcDelay] = []
                for a in la:
                    for k in ("cell_rise", "cell_fall", "rise_transition", "fall_transition"):
                        if getattr(a, k) is None:
                            raise UserError(f"Liberty cell {g.cell} arc {pin}->{cell.output} has no {k} table; use a library with NLDM tables")
                # one ArcDelay per distinct (sense, when); groups that share both merge by max
                for sense, when in dict.fromkeys((a.timing_sense, _when(a, g.cell, pin, cell)) for a in la):
                    grp = [a for a in la if a.timing_sense == sense and _when(a, g.cell, pin, cell) == when]
                    arcs_pin.append(ArcDelay(sense, _nldm_arc(grp, float(load[g.output, 0]), float(load[g.output, 1])), when))
                arcs.append(arcs_pin)
            out.append(arcs)
        return out


def _when(a, cell_name: str, pin: str, cell) -> str | None:
    """The arc's ``when`` as a Python expression over ``cell``'s inputs; UserError for a
    condition this reader cannot use (unparsed syntax, other pins, ``mode``)."""
    where = f"Liberty cell {cell_name} timing arc {pin} -> {cell.output}"
    if a.mode:
        raise UserError(f"{where} has a mode ({a.mode}), which halo-opt does not model; map the netlist without this cell (dont_use)")
    if a.when_raw is not None and a.when is None:
        raise UserError(f"{where}: cannot read its when condition {a.when_raw!r}; fix the condition or map without this cell (dont_use)")
    if a.when is not None:
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_\[\]\.]*", a.when))
        if not names <= set(cell.inputs):
            raise UserError(f"{where}: its when condition {a.when_raw!r} uses {', '.join(sorted(names - set(cell.inputs)))}, not an input pin; fix the condition or map without this cell")
    return a.when


def _nldm_arc(arcs, load_fall: float, load_rise: float) -> ArcFn:
    def fn(out_rise: bool, in_slew: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ld = load_rise if out_rise else load_fall
        d = s = None
        for a in arcs:
            dd = interp2(a.cell_rise if out_rise else a.cell_fall, in_slew, ld)
            ss = interp2(a.rise_transition if out_rise else a.fall_transition, in_slew, ld)
            d = dd if d is None else np.maximum(d, dd)
            s = ss if s is None else np.maximum(s, ss)
        return d, s

    return fn


def fo4_ps(liberty: Liberty, cell: str = "sky130_fd_sc_hd__inv_1", pin: str = "A") -> float:
    """Fanout-of-4 delay (ps, mean of rise and fall) of ``cell`` driving 4 copies of itself,
    input slew iterated to the cell's own FO4 output slew."""
    lc = liberty.cell(cell)
    p = lc.pins[pin]
    fn = _nldm_arc(lc.arcs_from(pin), 4 * p.fall_cap_ff, 4 * p.rise_cap_ff)
    slew = np.array([0.0, 0.0])
    for _ in range(20):  # rise output is driven by a falling input and vice versa
        (dr, sr), (df, sf) = fn(True, slew[[0]]), fn(False, slew[[1]])
        slew = np.array([sf[0], sr[0]])
    return float((dr[0] + df[0]) / 2)
