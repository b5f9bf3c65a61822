"""Liberty (.lib / .lib.gz) reader: cells, pins, functions, NLDM timing tables, leakage.

Grammar (Liberty reference manual): a file is one ``library (name) { ... }`` group; a group
is ``kind (args) { statements }``; a simple attribute is ``name : value ;``; a complex
attribute is ``name (v1, v2, ...) ;``. ``/* */`` comments and ``\\`` line continuations are
allowed. :func:`parse_liberty` turns the text into a :class:`Group` tree; :func:`read_liberty`
interprets it into a :class:`Liberty` with values converted to **ps, fF and W**:

* ``time_unit`` (e.g. ``"1ns"``) scales delays/slews to ps; ``capacitive_load_unit (1, pf)``
  scales capacitances to fF; ``leakage_power_unit`` (e.g. ``"1nW"``) scales leakage to W.
* NLDM tables ``cell_rise / cell_fall / rise_transition / fall_transition`` of a ``timing``
  group are stored with axis 1 = input slew (ps), axis 2 = output load (fF), transposed if the
  ``lu_table_template`` orders the variables the other way; missing ``index_*`` come from the
  template.
* A ``timing`` group's ``when`` condition is converted like a function and kept on its
  :class:`Arc` (the timing pass enables or disables the arc per weight code); ``sdf_cond`` is
  ignored, as OpenSTA ignores it for timing. A condition this reader cannot convert, or a
  ``mode``, only raises UserError when a netlist uses that cell.
* :func:`read_liberty` takes one file or a list (a library shipped in several files, e.g.
  ASAP7's four), each scaled by its own header units, merged into one :class:`Liberty`.
* A simple attribute may end at the line end without ``;`` (ASAP7 writes ``area : 0.26244``).
* A pin ``function`` is converted to a Python bitwise expression (``!x``/``x'`` -> ``~``,
  ``*``/``&``/juxtaposition -> ``&``, ``+``/``|`` -> ``|``, ``^`` -> ``^``), with OpenSTA's
  precedence (NOT > XOR > AND > OR), fully parenthesised.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..artifacts import atomic_path, sha256_bytes
from ..errors import UserError
from ..paths import cache_dir
from .netlist import Cell

# ----------------------------------------------------------------------------------- syntax

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}():;,]|[^\s{}():;,"]+')


@dataclass
class Group:
    """One Liberty group: ``kind (args) { attrs; complex attrs; subgroups }``."""

    kind: str
    args: list[str]
    attrs: dict[str, str] = field(default_factory=dict)
    complex: dict[str, list[list[str]]] = field(default_factory=dict)
    groups: list["Group"] = field(default_factory=list)

    def sub(self, kind: str) -> list["Group"]:
        return [g for g in self.groups if g.kind == kind]


def _unquote(tok: str) -> str:
    return tok[1:-1] if tok.startswith('"') else tok


_BARE_ATTR = re.compile(r'^([ \t]*[A-Za-z_][\w.]*[ \t]*:[ \t]*(?:"[^"\n]*"|[^\s;{}"]+))[ \t]*\r?$', re.M)


def parse_liberty(text: str) -> Group:
    """Parse Liberty source text into its top-level group (normally ``library``)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S).replace("\\\n", " ").replace("\\\r\n", " ")
    # a simple attribute may end at the line end without ';' (ASAP7: "area : 0.26244"): add it
    text = _BARE_ATTR.sub(r"\1;", text)
    toks = _TOKEN.findall(text)
    root = Group("<root>", [])
    stack = [root]
    i, n = 0, len(toks)
    try:
        while i < n:
            t = toks[i]
            if t == "}":
                stack.pop()
                i += 1
                if i < n and toks[i] == ";":
                    i += 1
                continue
            if t == ";":
                i += 1
                continue
            nxt = toks[i + 1]
            if nxt == ":":  # simple attribute: name : value ;
                j = i + 2
                while j < n and toks[j] not in (";", "}"):
                    j += 1
                stack[-1].attrs[t] = " ".join(_unquote(v) for v in toks[i + 2:j])
                i = j + 1 if j < n and toks[j] == ";" else j
            elif nxt == "(":
                j = i + 2
                args: list[str] = []
                while toks[j] != ")":
                    if toks[j] != ",":
                        args.append(_unquote(toks[j]))
                    j += 1
                j += 1
                if j < n and toks[j] == "{":
                    g = Group(t, args)
                    stack[-1].groups.append(g)
                    stack.append(g)
                    i = j + 1
                else:
                    stack[-1].complex.setdefault(t, []).append(args)
                    i = j + 1 if j < n and toks[j] == ";" else j
            else:
                raise IndexError
    except IndexError:
        raise UserError(f"Liberty syntax error near token {i} ({' '.join(toks[max(0, i - 3):i + 4])!r}); check the file is a valid Liberty library") from None
    if len(stack) != 1 or len(root.groups) != 1:
        raise UserError("Liberty file is truncated or has unbalanced braces; check the file is a complete Liberty library")
    return root.groups[0]


# ----------------------------------------------------------------------------------- function

_FTOK = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_\[\]\.]*)|([01])|(.))")


def liberty_function_to_python(expr: str) -> str:
    """Liberty boolean ``function`` -> fully parenthesised Python bitwise expression.

    ``"(!A) | (!B)"`` -> ``"(~(A) | ~(B))"``; ``"A B"`` -> ``"(A & B)"``; ``"A'"`` -> ``"~(A)"``;
    constants ``0``/``1`` stay ``0``/``1``. Raises UserError on a malformed expression.
    """
    toks: list[tuple[str, str]] = []
    for m in _FTOK.finditer(expr):
        if m.group(1):
            toks.append(("id", m.group(1)))
        elif m.group(2):
            toks.append(("id", m.group(2)))
        elif m.group(3) and not m.group(3).isspace():
            toks.append(("op", m.group(3)))
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise UserError(f"Liberty function {expr!r} ends early; fix the cell's function attribute")
        pos += 1
        return toks[pos - 1]

    def starts_operand(t) -> bool:
        return t is not None and (t[0] == "id" or t[1] in "(!")

    def unary() -> str:
        t = take()
        if t == ("op", "!"):
            s = f"~({unary()})"
        elif t == ("op", "("):
            s = orexp()
            if take() != ("op", ")"):
                raise UserError(f"Liberty function {expr!r} has unbalanced parentheses")
        elif t[0] == "id":
            s = t[1]
        else:
            raise UserError(f"Liberty function {expr!r}: unexpected {t[1]!r}")
        while peek() == ("op", "'"):
            take()
            s = f"~({s})"
        return s

    def xorexp() -> str:
        s = unary()
        while peek() == ("op", "^"):
            take()
            s = f"({s} ^ {unary()})"
        return s

    def andexp() -> str:
        s = xorexp()
        while True:
            t = peek()
            if t in (("op", "*"), ("op", "&")):
                take()
            elif not starts_operand(t):
                return s
            s = f"({s} & {xorexp()})"

    def orexp() -> str:
        s = andexp()
        while peek() in (("op", "+"), ("op", "|")):
            take()
            s = f"({s} | {andexp()})"
        return s

    out = orexp()
    if pos != len(toks):
        raise UserError(f"Liberty function {expr!r}: trailing {toks[pos][1]!r}")
    return out


# ----------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Table:
    """NLDM table: ``values[i, j]`` (ps) at input slew ``index_1[i]`` (ps), load ``index_2[j]`` (fF)."""

    index_1: np.ndarray
    index_2: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Arc:
    """Combinational timing arc ``related_pin -> output`` (one Liberty ``timing`` group).

    ``when``: the group's ``when`` condition as a Python expression over the cell's pins (None
    if the group has none); ``when_raw``: the Liberty text (kept when it cannot be converted,
    then ``when`` is None and using the arc raises UserError); ``mode``: the group's ``mode``
    attribute (unsupported: using such an arc raises UserError).
    """

    related_pin: str
    timing_sense: str  # positive_unate | negative_unate | non_unate
    cell_rise: Table | None
    cell_fall: Table | None
    rise_transition: Table | None
    fall_transition: Table | None
    when: str | None = None
    when_raw: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class Pin:
    name: str
    direction: str
    cap_ff: float
    rise_cap_ff: float
    fall_cap_ff: float
    function: str | None  # Python expression (outputs only)


@dataclass
class LibCell:
    name: str
    area: float
    leakage_w: float
    pins: dict[str, Pin]
    arcs: dict[str, list[Arc]]  # output pin -> arcs into it
    sequential: bool = False
    dont_use: bool = False
    three_state: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pins.values() if p.direction == "input")

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pins.values() if p.direction in ("output", "inout"))

    def arcs_from(self, pin: str, output: str | None = None) -> list[Arc]:
        """Combinational arcs ``pin -> output`` (the cell's single output by default)."""
        out = output or self.outputs[0]
        arcs = [a for a in self.arcs.get(out, []) if a.related_pin == pin]
        if not arcs:
            raise UserError(f"Liberty cell {self.name} has no timing arc {pin} -> {out}; use a library with combinational arcs for every input")
        return arcs


@dataclass
class Liberty:
    """A parsed Liberty library (values in ps, fF, W)."""

    name: str
    path: str
    cells: dict[str, LibCell]
    voltage: float | None = None

    def cell(self, name: str) -> LibCell:
        if name not in self.cells:
            raise UserError(f"cell {name!r} is not in Liberty library {self.name} ({self.path}); map the netlist with this library")
        return self.cells[name]

    def logic_cells(self) -> "LogicCells":
        """Single-output combinational cells (no sequential, multi-output, tri-state or dont_use
        cell, and the function uses only the cell's input pins); ``.excluded`` names why each
        other cell is left out (netlist readers quote it)."""
        out = LogicCells()
        for c in self.cells.values():
            outs = c.outputs
            why = ("sequential (ff/latch/statetable)" if c.sequential else "dont_use" if c.dont_use
                   else "three-state" if c.three_state else f"{len(outs)}-output ({', '.join(outs)})" if len(outs) != 1 else None)
            fn = c.pins[outs[0]].function if len(outs) == 1 else None
            if why is None and fn is None:
                why = "function-less (no readable output function)"
            elif why is None and not set(re.findall(r"[A-Za-z_][A-Za-z0-9_\[\]\.]*", fn)) <= set(c.inputs):
                why = "internal-state (function over non-input pins)"
            if why is not None:
                out.excluded[c.name] = why
                continue
            out[c.name] = Cell(c.name, c.inputs, outs[0], fn)
        return out


class LogicCells(dict):
    """``{name: Cell}`` of the timeable cells, with ``excluded``: ``{name: reason}`` of the rest."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.excluded: dict[str, str] = {}


def _function_or_none(fn: str | None) -> str | None:
    """Converted pin function; None (cell left out of ``logic_cells``) if it cannot be parsed,
    e.g. a function over internal state or bus syntax this reader does not model."""
    if not fn:
        return None
    try:
        return liberty_function_to_python(fn)
    except UserError:
        return None


_UNIT = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0}


def _unit(text: str, base: str) -> float:
    """'1ns' -> 1e-9 (for base 's'), '10ps' -> 1e-11, '1nW' -> 1e-9 (base 'W')."""
    m = re.fullmatch(r"\s*([0-9.eE+-]*)\s*([fpnum]?)" + base + r"\s*", text, flags=re.I)
    if not m:
        raise UserError(f"cannot read Liberty unit {text!r}; expected e.g. '1ns', '1pf', '1nW'")
    return float(m.group(1) or 1) * _UNIT[m.group(2).lower()]


def _floats(s: str) -> np.ndarray:
    return np.array([float(x) for x in re.split(r"[\s,]+", s.strip()) if x], dtype=np.float64)


def _table(g: Group, templates: dict[str, Group], t_scale: float, c_scale: float, where: str) -> Table:
    tmpl = templates.get(g.args[0]) if g.args else None
    if g.args and g.args[0] != "scalar" and tmpl is None:
        raise UserError(f"{where}: lu_table_template {g.args[0]!r} is not defined in the library")

    def idx(k: str) -> np.ndarray | None:
        src = g.complex.get(k) or (tmpl.complex.get(k) if tmpl else None)
        return _floats(",".join(src[0])) if src else None

    if "values" not in g.complex:
        raise UserError(f"{where}: table has no values; fix the Liberty file")
    vals = np.array([_floats(r) for r in g.complex["values"][0]], dtype=np.float64)
    i1, i2 = idx("index_1"), idx("index_2")
    var1 = tmpl.attrs.get("variable_1", "") if tmpl else ""
    if i1 is None:
        i1 = np.zeros(1)
    if i2 is None:
        i2 = np.zeros(1)
        vals = vals.reshape(len(i1), 1) if vals.size == len(i1) else vals.reshape(1, 1)
    vals = vals.reshape(len(i1), len(i2))
    if "capacitance" in var1:  # template orders (load, slew): transpose to (slew, load)
        i1, i2, vals = i2, i1, vals.T
    return Table(i1 * t_scale, i2 * c_scale, vals * t_scale)


def _interpret(lib: Group, path: str) -> Liberty:
    if lib.kind != "library":
        raise UserError(f"{path} is not a Liberty library (top group is {lib.kind!r})")
    a = lib.attrs
    t_scale = _unit(a.get("time_unit", "1ns"), "s") / 1e-12  # -> ps
    cu = lib.complex.get("capacitive_load_unit")
    c_scale = (float(cu[0][0]) * _unit(cu[0][1], "f") / 1e-15) if cu else 1e3  # -> fF (default pF)
    p_scale = _unit(a.get("leakage_power_unit", "1nW"), "W")  # -> W
    templates = {g.args[0]: g for g in lib.sub("lu_table_template") if g.args}
    voltage = None
    for oc in lib.sub("operating_conditions"):
        if "voltage" in oc.attrs:
            voltage = float(oc.attrs["voltage"])
    if "nom_voltage" in a:
        voltage = float(a["nom_voltage"])
    cells: dict[str, LibCell] = {}
    for cg in lib.sub("cell"):
        name = cg.args[0]
        pins: dict[str, Pin] = {}
        arcs: dict[str, list[Arc]] = {}
        three = False
        pin_groups = [(pn.strip(), pg) for pg in cg.sub("pin") for pn in ",".join(pg.args).split(",")]
        for pn, pg in pin_groups:
            pa = pg.attrs
            cap = float(pa.get("capacitance", 0.0)) * c_scale
            fn = pa.get("function")
            three = three or "three_state" in pa
            pins[pn] = Pin(
                pn,
                pa.get("direction", "input"),
                cap,
                float(pa.get("rise_capacitance", pa.get("capacitance", 0.0))) * c_scale,
                float(pa.get("fall_capacitance", pa.get("capacitance", 0.0))) * c_scale,
                _function_or_none(fn),
            )
            for tg in pg.sub("timing"):
                if tg.attrs.get("timing_type", "combinational") not in ("combinational", "combinational_rise", "combinational_fall"):
                    continue
                where = f"{path}: cell {name} pin {pn}"
                tabs = {}
                for k in ("cell_rise", "cell_fall", "rise_transition", "fall_transition"):
                    sub = tg.sub(k)
                    tabs[k] = _table(sub[0], templates, t_scale, c_scale, where) if sub else None
                when_raw = tg.attrs.get("when")
                mode = " ".join(",".join(m) for m in tg.complex.get("mode", [])) or tg.attrs.get("mode")
                for rp in tg.attrs.get("related_pin", "").split():
                    arcs.setdefault(pn, []).append(Arc(rp, tg.attrs.get("timing_sense", "non_unate"), **tabs,
                                                       when=_function_or_none(when_raw), when_raw=when_raw, mode=mode))
        cells[name] = LibCell(
            name=name,
            area=float(cg.attrs.get("area", 0.0)),
            leakage_w=float(cg.attrs.get("cell_leakage_power", 0.0)) * p_scale,
            pins=pins,
            arcs=arcs,
            sequential=bool(cg.sub("ff") or cg.sub("latch") or cg.sub("statetable") or cg.sub("ff_bank") or cg.sub("latch_bank")),
            dont_use=cg.attrs.get("dont_use", "false").lower() == "true",
            three_state=three,
        )
    return Liberty(lib.args[0] if lib.args else Path(path).stem, str(path), cells, voltage)


PARSER_VERSION = 2  # bump when the parsed model changes: invalidates the on-disk cache


# The on-disk cache is JSON: dataclasses of this module become {"__t": name, **fields},
# arrays {"__a": values, "dtype": ...}; loading constructs only the dataclasses defined here,
# from plain data, so a cache file can never run code (unlike pickle).
def _encode(o):
    if isinstance(o, np.ndarray):
        return {"__a": o.tolist(), "dtype": str(o.dtype)}
    if hasattr(o, "__dataclass_fields__"):
        return {"__t": type(o).__name__, **{k: _encode(getattr(o, k)) for k in o.__dataclass_fields__}}
    if isinstance(o, dict):
        return {"__d": [[k, _encode(v)] for k, v in o.items()]}
    if isinstance(o, (list, tuple)):
        return [_encode(v) for v in o]
    return o


def _decode(o):
    if isinstance(o, list):
        return [_decode(v) for v in o]
    if not isinstance(o, dict):
        return o
    if "__a" in o:
        return np.array(o["__a"], dtype=np.dtype(o["dtype"]))
    if "__d" in o:
        return {k: _decode(v) for k, v in o["__d"]}
    cls = globals().get(o.get("__t", ""))
    if not (isinstance(cls, type) and hasattr(cls, "__dataclass_fields__") and cls.__module__ == __name__):
        raise ValueError(f"unknown cached type {o.get('__t')!r}")
    return cls(**{k: _decode(v) for k, v in o.items() if k != "__t"})


@lru_cache(maxsize=8)
def _read_cached(path: str, mtime: float, size: int) -> Liberty:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read Liberty file {path}: {e}; pass a readable .lib or .lib.gz") from None
    disk = _disk_cache_path(raw)
    if disk is not None and disk.is_file():
        try:
            lib = _decode(json.loads(gzip.decompress(disk.read_bytes())))
            if isinstance(lib, Liberty):
                lib.path = path
                return lib
        except Exception:  # unreadable / incompatible cache entry: parse again and overwrite it
            pass
    try:
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read Liberty file {path}: {e}; pass a readable .lib or .lib.gz") from None
    lib = _interpret(parse_liberty(text), path)
    if disk is not None:
        try:
            with atomic_path(disk) as tmp:
                Path(tmp).write_bytes(gzip.compress(json.dumps(_encode(lib), separators=(",", ":")).encode(), 1))
        except OSError:
            pass  # a read-only cache only costs the parse time
    return lib


def _disk_cache_path(raw: bytes) -> Path | None:
    try:
        return cache_dir() / "liberty" / f"{sha256_bytes(raw)[:32]}.v{PARSER_VERSION}.json.gz"
    except (OSError, UserError):
        return None


def liberty_paths(path) -> list[Path]:
    """One path or a list of paths -> list of Paths (duplicates removed, order kept)."""
    items = [path] if isinstance(path, (str, Path)) else list(path or [])
    if not items:
        raise UserError("no Liberty file given; pass at least one .lib or .lib.gz file")
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if not p.is_file():
            raise UserError(f"Liberty file {p} does not exist; pass the path of a .lib or .lib.gz file")
        if p.resolve() not in [q.resolve() for q in out]:
            out.append(p)
    return out


def read_liberty(path) -> Liberty:
    """Read one Liberty file (plain or gzip), or several (a list: e.g. ASAP7's four files) merged
    into one library. Cached per process (path, mtime, size) and on disk under
    ``cache_dir()/liberty/`` by content hash as gzipped JSON (no pickle; parse 1-10 s per file,
    load from the cache ~0.1-0.5 s); treat the result as read-only.

    Every file's units (``time_unit``, ``capacitive_load_unit``, ``leakage_power_unit``) are
    read from its own header, so files with different units merge correctly. A cell defined in
    two files, or files with different nominal voltages, raise UserError.
    """
    libs = []
    for p in liberty_paths(path):
        st = p.stat()
        libs.append(_read_cached(str(p.resolve()), st.st_mtime, st.st_size))
    if len(libs) == 1:
        return libs[0]
    cells: dict[str, LibCell] = {}
    where: dict[str, str] = {}
    for lib in libs:
        for name, c in lib.cells.items():
            if name in cells:
                raise UserError(f"Liberty cell {name} is defined in both {where[name]} and {lib.path}; pass each cell's library once")
            cells[name], where[name] = c, lib.path
    volts = {lib.voltage for lib in libs if lib.voltage is not None}
    if len(volts) > 1:
        raise UserError(f"Liberty files have different nominal voltages ({', '.join(f'{v:g} V' for v in sorted(volts))}); pass files of one corner")
    return Liberty("+".join(lib.name for lib in libs), ", ".join(lib.path for lib in libs), cells, volts.pop() if volts else None)
