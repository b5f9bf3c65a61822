"""Liberty power data: supply voltage, ``internal_power`` tables and state-dependent leakage.

Read from the :class:`~halo_opt.hardware.liberty.Group` tree of :func:`parse_liberty` (the
timing model in :mod:`.liberty` does not keep power groups). Values are converted to **V, ps,
fF, fJ and W** with the library header:

* energy (``internal_power`` tables) is in ``voltage_unit² · capacitive_load_unit`` (OpenSTA's
  ``energy_scale = volt_scale² · cap_scale``): pJ for sky130 and SG13G2 (1 V, 1 pF), fJ for
  ASAP7 (1 V, 1 fF);
* table axes: ``input_transition_time`` in ``time_unit`` -> ps, ``total_output_net_capacitance``
  in ``capacitive_load_unit`` -> fF (either order, from the ``power_lut_template``);
* leakage (``cell_leakage_power``, ``leakage_power { value }``) in ``leakage_power_unit`` -> W.

**Voltage** (:attr:`LibraryPower.voltage`): the ``voltage_map`` value of the cells' primary
power rail (the ``voltage_name`` of their ``pg_pin`` with ``pg_type : primary_power``), else
``nom_voltage``, else the default ``operating_conditions`` voltage; ``voltage_source`` says which.

**Internal power.** Groups of one pin with the same ``related_pin`` and ``when`` are summed
(ASAP7 gives one group per ``related_pg_pin``, VDD and VSS); groups with different ``when``
are alternatives, and a group without ``when`` is the fallback where no condition holds.
A group on an output pin with ``related_pin`` is an arc energy (output edge picks
``rise_power`` / ``fall_power``; axes input slew of the related pin, output load); a group on
an input pin is the pin's own energy (its edge picks the table; axis its slew).

**Leakage.** ``leakage_power`` groups with the same ``when`` are summed over their
``related_pg_pin``; a group without ``when`` (else ``cell_leakage_power``) is the default
state's leakage.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .liberty import Group, Table, _unit, liberty_function_to_python, parse_liberty


@dataclass(frozen=True)
class InternalPower:
    """Summed ``internal_power`` tables of one (pin, related_pin, when): energies in fJ,
    ``index_1`` input slew (ps), ``index_2`` output load (fF; one zero entry for input pins)."""

    pin: str
    related_pin: str | None
    when: str | None  # Python expression over the cell's pins, None = unconditional
    rise: tuple[Table, ...]
    fall: tuple[Table, ...]


@dataclass(frozen=True)
class CellPower:
    name: str
    internal: tuple[InternalPower, ...]
    leakage: tuple[tuple[str | None, float], ...]  # (when or None, W), summed over pg pins
    default_leakage_w: float  # unconditional group, else cell_leakage_power

    def arc_groups(self, pin: str, related_pin: str | None) -> list[InternalPower]:
        """Alternatives for one arc / pin: conditional groups first (library order), then the
        unconditional fallback (if any)."""
        g = [p for p in self.internal if p.pin == pin and p.related_pin == related_pin]
        return [p for p in g if p.when is not None] + [p for p in g if p.when is None]


@dataclass(frozen=True)
class LibraryPower:
    name: str
    voltage: float | None
    voltage_source: str
    cells: dict[str, CellPower]

    def cell(self, name: str) -> CellPower:
        if name not in self.cells:
            raise UserError(f"cell {name!r} is not in Liberty library {self.name}; map the netlist with this library")
        return self.cells[name]


def _floats(s: str) -> np.ndarray:
    return np.array([float(x) for x in re.split(r"[\s,]+", s.strip()) if x], dtype=np.float64)


def _power_table(g: Group, templates: dict[str, Group], t_scale: float, c_scale: float, e_scale: float, where: str) -> Table:
    """One ``rise_power``/``fall_power`` table -> :class:`Table` (slew ps x load fF, fJ)."""
    tmpl = templates.get(g.args[0]) if g.args and g.args[0] != "scalar" else None
    if g.args and g.args[0] != "scalar" and tmpl is None:
        raise UserError(f"{where}: power_lut_template {g.args[0]!r} is not defined in the library")
    if "values" not in g.complex:
        raise UserError(f"{where}: power table has no values; fix the Liberty file")
    axes = {"slew": np.zeros(1), "load": np.zeros(1)}
    shape = []
    for k in (1, 2, 3):
        var = tmpl.attrs.get(f"variable_{k}", "") if tmpl else ""
        src = g.complex.get(f"index_{k}") or (tmpl.complex.get(f"index_{k}") if tmpl else None)
        if not var and not src:
            continue
        if "transition" in var:
            axes["slew"] = _floats(",".join(src[0])) * t_scale
            shape.append("slew")
        elif "capacitance" in var:
            axes["load"] = _floats(",".join(src[0])) * c_scale
            shape.append("load")
        else:
            raise UserError(f"{where}: power table variable {var!r} is not supported; use input_transition_time / total_output_net_capacitance")
    vals = np.array([_floats(r) for r in g.complex["values"][0]], dtype=np.float64).ravel()
    dims = [axes[s].size for s in shape]
    if vals.size != int(np.prod(dims)):
        raise UserError(f"{where}: power table has {vals.size} values for axes of sizes {dims}; fix the Liberty file")
    v = vals.reshape(dims) if dims else vals.reshape(())
    if shape == ["load", "slew"]:
        v = v.T
    return Table(axes["slew"], axes["load"], v.reshape(axes["slew"].size, axes["load"].size) * e_scale)


def _when(expr: str | None, pins: set[str], where: str) -> str | None:
    if not expr:
        return None
    py = liberty_function_to_python(expr)
    unknown = set(re.findall(r"[A-Za-z_][A-Za-z0-9_\[\]\.]*", py)) - pins
    if unknown:
        raise UserError(f"{where}: when {expr!r} uses {sorted(unknown)}, which are not pins of the cell; fix the Liberty file")
    return py


def interpret_power(lib: Group, path: str) -> LibraryPower:
    """Power data of one parsed ``library`` group (module docstring)."""
    if lib.kind != "library":
        raise UserError(f"{path} is not a Liberty library (top group is {lib.kind!r})")
    a = lib.attrs
    t_scale = _unit(a.get("time_unit", "1ns"), "s") / 1e-12
    cu = lib.complex.get("capacitive_load_unit")
    c_farad = float(cu[0][0]) * _unit(cu[0][1], "f") if cu else 1e-12
    v_scale = _unit(a.get("voltage_unit", "1V"), "V")
    e_scale = v_scale ** 2 * c_farad / 1e-15  # -> fJ
    c_scale = c_farad / 1e-15
    p_scale = _unit(a.get("leakage_power_unit", "1nW"), "W")
    templates = {g.args[0]: g for g in lib.sub("power_lut_template") if g.args}
    vmap = {args[0]: float(args[1]) * v_scale for args in lib.complex.get("voltage_map", []) if len(args) >= 2}

    rails: set[str] = set()
    cells: dict[str, CellPower] = {}
    for cg in lib.sub("cell"):
        name = cg.args[0]
        rails |= {pg.attrs["voltage_name"] for pg in cg.sub("pg_pin") if pg.attrs.get("pg_type") == "primary_power" and "voltage_name" in pg.attrs}
        pin_groups = [(pn.strip(), pg) for pg in cg.sub("pin") for pn in ",".join(pg.args).split(",")]
        pins = {pn for pn, _ in pin_groups}
        where = f"{path}: cell {name}"
        tabs: dict[tuple, tuple[list[Table], list[Table]]] = {}
        for pn, pg in pin_groups:
            for ip in pg.sub("internal_power"):
                w = _when(ip.attrs.get("when"), pins, where)
                for rp in (ip.attrs.get("related_pin", "").split() or [None]):
                    r, f = tabs.setdefault((pn, rp, w), ([], []))
                    for kind, lst in (("rise_power", r), ("fall_power", f)):
                        for tg in ip.sub(kind):
                            lst.append(_power_table(tg, templates, t_scale, c_scale, e_scale, f"{where} pin {pn}"))
        leak: dict[str | None, float] = {}
        for lg in cg.sub("leakage_power"):
            w = _when(lg.attrs.get("when"), pins, where)
            leak[w] = leak.get(w, 0.0) + float(lg.attrs.get("value", 0.0)) * p_scale
        default = leak.pop(None, float(cg.attrs.get("cell_leakage_power", 0.0)) * p_scale)
        cells[name] = CellPower(name, tuple(InternalPower(p, rp, w, tuple(r), tuple(f)) for (p, rp, w), (r, f) in tabs.items()),
                                tuple(leak.items()), default)

    voltage, source = None, "none"
    rail_v = {vmap[r] for r in rails if r in vmap}
    if len(rail_v) == 1:
        voltage, source = rail_v.pop(), f"voltage_map({'/'.join(sorted(r for r in rails if r in vmap))})"
    elif len(rail_v) > 1:
        raise UserError(f"{path}: cells use primary power rails at different voltages {sorted(rail_v)}; halo-opt models one supply")
    elif "nom_voltage" in a:
        voltage, source = float(a["nom_voltage"]) * v_scale, "nom_voltage"
    else:
        ocs = lib.sub("operating_conditions")
        default_oc = a.get("default_operating_conditions")
        oc = next((o for o in ocs if o.args and o.args[0] == default_oc), ocs[0] if ocs else None)
        if oc is not None and "voltage" in oc.attrs:
            voltage, source = float(oc.attrs["voltage"]) * v_scale, "operating_conditions"
    return LibraryPower(lib.args[0] if lib.args else Path(path).stem, voltage, source, cells)


@lru_cache(maxsize=4)
def _read_one(path: str, mtime: float, size: int) -> LibraryPower:
    try:
        raw = Path(path).read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", errors="replace")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read Liberty file {path}: {e}; pass a readable .lib or .lib.gz") from None
    return interpret_power(parse_liberty(text), path)


def read_liberty_power(paths: str | Path | Sequence[str | Path]) -> LibraryPower:
    """Power data of one Liberty file or several (cells merged; all must share one supply
    voltage). Cached per process by (path, mtime, size); the parse takes ~3 s for sky130."""
    ps = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not ps:
        raise UserError("no Liberty file given; pass at least one .lib or .lib.gz")
    libs = []
    for p in map(Path, ps):
        if not p.is_file():
            raise UserError(f"Liberty file {p} does not exist; pass the path of a .lib or .lib.gz file")
        st = p.stat()
        libs.append(_read_one(str(p.resolve()), st.st_mtime, st.st_size))
    volts = {round(l.voltage, 9) for l in libs if l.voltage is not None}
    if len(volts) > 1:
        raise UserError(f"Liberty files have different supply voltages {sorted(volts)} V; pass files of one operating corner")
    if len(libs) == 1:
        return libs[0]
    cells: dict[str, CellPower] = {}
    for l in libs:
        cells.update(l.cells)
    v = next((l for l in libs if l.voltage is not None), libs[0])
    return LibraryPower("+".join(dict.fromkeys(l.name for l in libs)), v.voltage, v.voltage_source, cells)
