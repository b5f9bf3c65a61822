"""Gate-level netlist data model.

A :class:`Netlist` is a flat, combinational, single-output-per-gate circuit:

* nets are integers ``0 .. n_nets-1``; net 0 is constant 0 and net 1 is constant 1;
* ``inputs`` / ``outputs`` map port names (``a``, ``w``, ``p`` / ``y``) to net ids, LSB first;
* ``gates`` are in topological order (every input net is a primary input, a constant, or
  the output of an earlier gate);
* each gate's cell type is described by a :class:`Cell` whose ``function`` is a Python
  bitwise expression over its input pin names (``&``, ``|``, ``^``, ``~``), so the same
  string evaluates on bools, ints or packed ``uint64`` words (bit-parallel simulation).

Yosys internal gates (``$_AND_`` …) are in :data:`YOSYS_CELLS`; Liberty cells get their
function from the library's ``function`` attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CONST0 = 0
CONST1 = 1


@dataclass(frozen=True)
class Cell:
    """Logic of one cell type: input pin names (in order), output pin, function expression."""

    name: str
    inputs: tuple[str, ...]
    output: str
    function: str


@dataclass(frozen=True)
class Gate:
    """One gate instance: cell type, input nets (in ``Cell.inputs`` order), output net."""

    name: str
    cell: str
    inputs: tuple[int, ...]
    output: int


@dataclass
class Netlist:
    """Flat combinational netlist (see module docstring for the conventions)."""

    module: str
    n_nets: int
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    gates: list[Gate]
    cells: dict[str, Cell]
    net_names: dict[int, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def fanout(self) -> list[list[tuple[int, int]]]:
        """For each net, the ``(gate index, input position)`` pairs it drives."""
        fo: list[list[tuple[int, int]]] = [[] for _ in range(self.n_nets)]
        for gi, g in enumerate(self.gates):
            for k, n in enumerate(g.inputs):
                fo[n].append((gi, k))
        return fo

    @property
    def output_nets(self) -> list[int]:
        return [n for nets in self.outputs.values() for n in nets]

    @property
    def input_nets(self) -> list[int]:
        return [n for nets in self.inputs.values() for n in nets]

    def validate(self) -> None:
        """Check the conventions above; raise ``ValueError`` naming the first violation.

        Input-port bits may be tied to the constant nets 0/1 (after constant propagation);
        nets that nothing drives and nothing reads are allowed (they stay 0 in simulation).
        """
        defined = {CONST0, CONST1}
        for n in self.input_nets:
            if not 0 <= n < self.n_nets or (n in defined and n > CONST1):
                raise ValueError(f"input net {n} out of range or repeated")
            defined.add(n)
        for gi, g in enumerate(self.gates):
            cell = self.cells.get(g.cell)
            if cell is None:
                raise ValueError(f"gate {gi} ({g.name}) has cell type {g.cell} missing from netlist.cells")
            if len(g.inputs) != len(cell.inputs):
                raise ValueError(f"gate {gi} ({g.name}) has {len(g.inputs)} inputs, cell {g.cell} has {len(cell.inputs)}")
            for n in g.inputs:
                if n not in defined:
                    raise ValueError(f"gate {gi} ({g.name}) reads net {n} before it is driven (not topological)")
            if g.output in defined or not 0 <= g.output < self.n_nets:
                raise ValueError(f"gate {gi} ({g.name}) drives net {g.output}, already driven or out of range")
            defined.add(g.output)
        for n in self.output_nets:
            if n not in defined:
                raise ValueError(f"output net {n} has no driver")


def _cell(name: str, pins: str, fn: str, out: str = "Y") -> Cell:
    return Cell(name, tuple(pins), out, fn)


#: Yosys internal gate library (``techmap``/``abc -g`` output), functions per yosys/techlibs/common/simcells.v.
YOSYS_CELLS: dict[str, Cell] = {
    c.name: c
    for c in [
        _cell("$_BUF_", "A", "A"),
        _cell("$_NOT_", "A", "~A"),
        _cell("$_AND_", "AB", "A & B"),
        _cell("$_NAND_", "AB", "~(A & B)"),
        _cell("$_OR_", "AB", "A | B"),
        _cell("$_NOR_", "AB", "~(A | B)"),
        _cell("$_XOR_", "AB", "A ^ B"),
        _cell("$_XNOR_", "AB", "~(A ^ B)"),
        _cell("$_ANDNOT_", "AB", "A & ~B"),
        _cell("$_ORNOT_", "AB", "A | ~B"),
        _cell("$_MUX_", "ABS", "(A & ~S) | (B & S)"),
        _cell("$_NMUX_", "ABS", "~((A & ~S) | (B & S))"),
        _cell("$_AOI3_", "ABC", "~((A & B) | C)"),
        _cell("$_OAI3_", "ABC", "~((A | B) & C)"),
        _cell("$_AOI4_", "ABCD", "~((A & B) | (C & D))"),
        _cell("$_OAI4_", "ABCD", "~((A | B) & (C | D))"),
    ]
}
