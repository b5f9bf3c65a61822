"""Yosys JSON (``write_json``) -> :class:`~halo_opt.hardware.netlist.Netlist`.

Yosys numbers every signal bit (an int >= 2) and writes constants as the strings
``"0"``/``"1"`` (``"x"``/``"z"`` are undefined bits: rejected). Aliased wires (``assign``
statements, buffers folded by Yosys) share one bit number, so an output bit may be an
input bit or a constant. The parser renumbers nets as

    0 = const 0, 1 = const 1, then the bits of ports a, w, p (LSB first),
    then gate outputs in topological order (Kahn's algorithm),

so every gate's inputs precede it. Cell functions come from :data:`YOSYS_CELLS` for
Yosys internal gates, or from a ``dict[str, Cell]`` of Liberty cells.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from ..artifacts import read_json
from ..errors import UserError
from .netlist import CONST0, CONST1, YOSYS_CELLS, Cell, Gate, Netlist

IN_PORTS = ("a", "w", "p")
OUT_PORTS = ("y",)
BUILTIN = "yosys-builtin"
IGNORED_CELLS = {"$scopeinfo"}  # hierarchy bookkeeping left by `flatten`, no logic


def parse_yosys_json(
    data: dict[str, Any] | str | Path,
    cells: dict[str, Cell] | None = None,
    library: str = BUILTIN,
    top: str | None = None,
    ports: tuple[tuple[str, ...], tuple[str, ...]] = (IN_PORTS, OUT_PORTS),
) -> Netlist:
    """Parse a Yosys JSON netlist (a dict, or a path to one) into a :class:`Netlist`.

    ``cells``: cell functions by type name (default :data:`YOSYS_CELLS`); ``library`` names
    that cell set in error messages and in ``meta["library"]``. ``top``: module to read
    (default: the module marked top, else the only non-blackbox module, else ``mac``).
    ``ports``: the (input, output) port names the module must have, exactly (default a, w, p
    -> y; a stage of a pipelined MAC has others, :meth:`MacSpec.stage_ports`).
    Raises :class:`UserError` for missing ports, unknown cell types, undefined (``x``) bits,
    undriven or multiply driven nets and combinational loops.
    """
    source = None
    if isinstance(data, (str, Path)):
        source = str(data)
        data = read_json(data, "Yosys JSON netlist")
    where = source or "Yosys JSON netlist"
    cells = YOSYS_CELLS if cells is None else cells
    modules = data.get("modules") if isinstance(data, dict) else None
    if not isinstance(modules, dict) or not modules:
        raise UserError(f"{where} has no 'modules'; pass a file written by Yosys `write_json`")
    name = _pick_top(modules, top, where)
    mod = modules[name]
    names = _bit_names(mod)

    def label(bit: Any) -> str:
        return f"net {names.get(bit, bit)}"

    # ports -------------------------------------------------------------------------
    in_ports, out_ports = ports
    need = f"inputs {', '.join(in_ports)} and output{'s' if len(out_ports) > 1 else ''} {', '.join(out_ports)}"
    ports = mod.get("ports", {})
    for p in in_ports + out_ports:
        if p not in ports:
            have = ", ".join(sorted(ports)) or "none"
            raise UserError(f"module {name} in {where} has no port '{p}' (ports: {have}); a MAC netlist needs {need}")
    extra = sorted(set(ports) - set(in_ports + out_ports))
    if extra:
        raise UserError(f"module {name} in {where} has unexpected port(s) {', '.join(extra)}; a MAC netlist has only {need}")
    for p in in_ports + out_ports:
        want = "input" if p in in_ports else "output"
        if ports[p].get("direction") != want:
            raise UserError(f"port '{p}' of module {name} in {where} is {ports[p].get('direction')}, expected {want}")

    new_id: dict[Any, int] = {"0": CONST0, "1": CONST1}
    inputs: dict[str, list[int]] = {}
    for p in in_ports:
        nets = []
        for i, b in enumerate(ports[p]["bits"]):
            if not isinstance(b, int) or b in new_id:
                raise UserError(f"input bit {p}[{i}] of {where} is {'a constant' if isinstance(b, str) else 'shared with another input'}; input ports must be distinct free bits")
            new_id[b] = len(new_id)
            nets.append(new_id[b])
        inputs[p] = nets

    # cells -> (type, input bits, output bit) ---------------------------------------
    raw: list[tuple[str, Cell, list[Any], Any]] = []
    driver: dict[Any, int] = {}
    for inst, c in mod.get("cells", {}).items():
        ctype = c.get("type")
        if ctype in IGNORED_CELLS:
            continue
        cell = cells.get(ctype)
        if cell is None:
            why = getattr(cells, "excluded", {}).get(ctype)  # a Liberty cell halo-opt cannot time
            if why:
                raise UserError(f"cell {inst} of {where} has type {ctype}, a {why} cell of the {_library_hint(library)}; halo-opt times single-output combinational cells only: map the netlist without it")
            raise UserError(f"cell {inst} of {where} has type {ctype}, which is not in the {_library_hint(library)}; map the netlist to that library or pass the matching Liberty file")
        conn = c.get("connections", {})
        extra_pins = sorted(set(conn) - set(cell.inputs) - {cell.output})
        if extra_pins:
            raise UserError(f"cell {inst} ({ctype}) of {where} connects pin(s) {', '.join(extra_pins)} unknown to the {_library_hint(library)}")
        ins = []
        for pin in cell.inputs:
            bits = conn.get(pin)
            if not bits or len(bits) != 1:
                raise UserError(f"pin {pin} of cell {inst} ({ctype}) in {where} is {'unconnected' if not bits else 'not one bit'}")
            if bits[0] in ("x", "z"):
                raise UserError(f"pin {pin} of cell {inst} ({ctype}) in {where} is tied to undefined '{bits[0]}'; tie it to 0 or 1")
            ins.append(bits[0])
        out = conn.get(cell.output)
        if not out:
            continue  # output unconnected: the gate drives nothing
        if len(out) != 1 or not isinstance(out[0], int):
            raise UserError(f"output pin {cell.output} of cell {inst} ({ctype}) in {where} is connected to {out}; it must drive one net")
        ob = out[0]
        if ob in new_id:
            raise UserError(f"cell {inst} ({ctype}) in {where} drives {label(ob)}, which is a primary input")
        if ob in driver:
            raise UserError(f"{label(ob)} in {where} is driven by both {raw[driver[ob]][0]} and {inst}")
        driver[ob] = len(raw)
        raw.append((inst, cell, ins, ob))

    # Kahn's algorithm --------------------------------------------------------------
    deps: list[list[int]] = []
    for inst, cell, ins, _ in raw:
        d = []
        for pin, b in zip(cell.inputs, ins):
            if b in new_id:
                continue
            if b not in driver:
                raise UserError(f"{label(b)} feeding pin {pin} of cell {inst} in {where} has no driver")
            d.append(driver[b])
        deps.append(d)
    users: list[list[int]] = [[] for _ in raw]
    indeg = [len(set(d)) for d in deps]
    for gi, d in enumerate(deps):
        for j in set(d):
            users[j].append(gi)
    queue = deque(gi for gi in range(len(raw)) if indeg[gi] == 0)
    order: list[int] = []
    while queue:
        gi = queue.popleft()
        order.append(gi)
        for u in users[gi]:
            indeg[u] -= 1
            if indeg[u] == 0:
                queue.append(u)
    if len(order) < len(raw):
        raise UserError(f"combinational loop in {where} through {label(_loop_bit(raw, deps, set(range(len(raw))) - set(order)))}; the MAC must be purely combinational")

    gates = []
    for gi in order:
        inst, cell, ins, ob = raw[gi]
        new_id[ob] = len(new_id)
        gates.append(Gate(inst, cell.name, tuple(new_id[b] for b in ins), new_id[ob]))

    outputs: dict[str, list[int]] = {}
    for p in out_ports:
        nets = []
        for i, b in enumerate(ports[p]["bits"]):
            if b in ("x", "z"):
                raise UserError(f"output bit {p}[{i}] of {where} is undefined '{b}'; the netlist must define every output bit")
            if b not in new_id:
                raise UserError(f"output bit {p}[{i}] ({label(b)}) of {where} has no driver")
            nets.append(new_id[b])
        outputs[p] = nets

    used = {c.cell for c in gates}
    net_names = {nid: names[b] for b, nid in new_id.items() if b in names}
    net_names.update({CONST0: "1'b0", CONST1: "1'b1"})
    meta = {"module": name, "library": library, "source": source}
    return Netlist(name, len(new_id), inputs, outputs, gates, {k: cells[k] for k in sorted(used)}, net_names, meta)


def _pick_top(modules: dict[str, Any], top: str | None, where: str) -> str:
    if top is not None:
        if top not in modules:
            raise UserError(f"module {top} not found in {where} (modules: {', '.join(sorted(modules))}); pass the right top module name")
        return top
    attrs = {n: m.get("attributes", {}) for n, m in modules.items()}
    marked = [n for n, a in attrs.items() if _truthy(a.get("top"))]
    if len(marked) == 1:
        return marked[0]
    real = [n for n, a in attrs.items() if not _truthy(a.get("blackbox"))]
    if len(real) == 1:
        return real[0]
    if "mac" in modules:
        return "mac"
    raise UserError(f"{where} holds several modules ({', '.join(sorted(real))}) and none is marked top; pass the top module name")


def _truthy(v: Any) -> bool:
    return v is not None and v not in (0, "0") and not (isinstance(v, str) and set(v) <= {"0"})


def _bit_names(mod: dict[str, Any]) -> dict[int, str]:
    """Readable name per bit, preferring user-visible (``hide_name`` 0) names and ports."""
    best: dict[int, tuple[int, str]] = {}
    for nname, info in mod.get("netnames", {}).items():
        bits = info.get("bits", [])
        off = int(info.get("offset", 0))
        upto = bool(info.get("upto", 0))
        rank = 1 if info.get("hide_name", 0) else 0
        for i, b in enumerate(bits):
            if not isinstance(b, int):
                continue
            idx = off + (len(bits) - 1 - i if upto else i)
            label = nname if len(bits) == 1 else f"{nname}[{idx}]"
            if b not in best or (rank, label) < best[b]:
                best[b] = (rank, label)
    for pname, info in mod.get("ports", {}).items():
        for i, b in enumerate(info.get("bits", [])):
            if isinstance(b, int):
                best[b] = (-1, f"{pname}[{i}]")
    return {b: lab for b, (_, lab) in best.items()}


def _loop_bit(raw: list, deps: list[list[int]], remaining: set[int]) -> Any:
    """A net on a combinational loop: walk backwards among the unsorted gates until one repeats."""
    g = min(remaining)
    seen: list[int] = []
    while g not in seen:
        seen.append(g)
        g = next(d for d in deps[g] if d in remaining)  # an unsorted gate always has an unsorted driver
    return raw[g][3]


def _library_hint(library: str) -> str:
    if library == BUILTIN:
        return "Yosys internal gate library ($_AND_, $_OR_, $_XOR_, $_MUX_, ...)"
    return f"Liberty library {library}"
