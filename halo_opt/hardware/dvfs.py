"""Voltage/frequency: alpha-power-law delay scaling, DVFS level tables, timing checks.

Delay at supply ``V`` (Sakurai & Newton 1990)::

    d(V) = d(V0) · (V/V0) · ((V0 − Vt) / (V − Vt))^α

Leakage power (subthreshold current with DIBL, first order)::

    P_leak(V) = P_leak(V0) · (V/V0) · exp(dibl · (V − V0) / (n · kT/q))

Dynamic energy scales as ``(V/V0)²``. A level ``v`` (``V_v``, ``f_v``) may run a codebook with
nominal delay ``d_c`` iff ``d_c(V_v) · (1 + margin) ≤ 1/f_v``; the slack is
``1/f_v − d_c(V_v)·(1+margin)`` (ps, negative = misses timing).

DVFS tables (``data/dvfs/*.toml``) give levels relative to the nominal point: ``V = voltage_rel·V0``
and ``f = freq_rel·f0``. The clock anchor (the accelerator config's ``anchor``) sets ``f0``:

- ``characterised``: ``f0 = 1/(d_full(V0)·(1+margin))``, the clock at which the characterised
  full code grid just meets timing at V0; absolute clocks follow the measured MAC (its library's
  gate speed), so the memory bandwidth must be the one of that node;
- ``nominal``: ``f0`` = the part's nominal clock; every code's delay is scaled by
  ``delay_factor = 1/(f0·(1+margin)·d_full)``, so the per-code delays keep their ratios to the
  full grid's and the full grid meets timing exactly at ``f0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..artifacts import read_toml
from ..paths import data_dir, data_file

KT_Q = 0.02585  # thermal voltage at 300 K, V


@dataclass(frozen=True)
class AlphaPowerLaw:
    """Alpha-power-law delay and leakage scaling around the nominal supply ``v0`` (volts)."""

    v0: float
    vt: float
    alpha: float
    dibl: float = 0.08
    n_sub: float = 1.5
    name: str = "custom"
    source: str = ""

    def __post_init__(self) -> None:
        if not (0 < self.vt < self.v0):
            raise UserError(f"voltage law {self.name}: need 0 < vt < v0, got vt={self.vt} v0={self.v0}")

    def delay_scale(self, v: float) -> float:
        """d(V)/d(V0) (dimensionless); V must exceed Vt."""
        if v <= self.vt:
            raise UserError(f"supply {v:.3f} V is at or below the threshold voltage {self.vt} V of law {self.name}; raise the level's voltage")
        return (v / self.v0) * ((self.v0 - self.vt) / (v - self.vt)) ** self.alpha

    def leak_scale(self, v: float) -> float:
        """P_leak(V)/P_leak(V0) (dimensionless)."""
        return (v / self.v0) * math.exp(self.dibl * (v - self.v0) / (self.n_sub * KT_Q))

    def energy_scale(self, v: float) -> float:
        """Dynamic energy E(V)/E(V0) = (V/V0)²."""
        return (v / self.v0) ** 2


@dataclass(frozen=True)
class DvfsLevel:
    """One voltage/frequency point: supply ``voltage_v`` (V), clock ``freq_hz`` (Hz)."""

    name: str
    voltage_v: float
    freq_hz: float

    @property
    def period_ps(self) -> float:
        return 1e12 / self.freq_hz


@dataclass(frozen=True)
class DvfsTable:
    """Levels of one accelerator plus guard band and level-switch cost."""

    name: str
    levels: tuple[DvfsLevel, ...]
    margin: float
    switch_time_s: float
    switch_energy_j: float
    law: AlphaPowerLaw
    delay_factor: float = 1.0  # characterised ps → timed ps (1 unless anchored at a nominal clock)
    f0_hz: float = 0.0  # the nominal clock the levels are relative to
    anchor: str = "characterised"

    def level(self, name: str) -> DvfsLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise UserError(f"unknown DVFS level {name!r} in table {self.name}; valid: {', '.join(l.name for l in self.levels)}")

    def slack_ps(self, delay_ps_v0: float, level: DvfsLevel) -> float:
        """Timing slack (ps) of a path of nominal delay ``delay_ps_v0`` at ``level``; < 0 misses."""
        s = level.period_ps - delay_ps_v0 * self.delay_factor * self.law.delay_scale(level.voltage_v) * (1 + self.margin)
        return 0.0 if abs(s) <= 1e-9 * level.period_ps else s  # exactly at the boundary (float rounding): meets

    def meets(self, delay_ps_v0: float, level: DvfsLevel) -> bool:
        return self.slack_ps(delay_ps_v0, level) >= 0.0

    def fastest_level(self, delay_ps_v0: float) -> DvfsLevel | None:
        """The highest-clock level that meets timing (ties: lowest voltage), or None."""
        ok = [lv for lv in self.levels if self.meets(delay_ps_v0, lv)]
        return max(ok, key=lambda lv: (lv.freq_hz, -lv.voltage_v)) if ok else None


def load_voltage_law(name: str = "generic", path: str | Path | None = None) -> AlphaPowerLaw:
    """A named alpha-power law from ``data/voltage_laws.toml`` (or ``path``)."""
    path = Path(path) if path else data_dir() / "voltage_laws.toml"
    laws = read_toml(path, "voltage-law table")
    if name not in laws:
        raise UserError(f"unknown voltage law {name!r}; valid: {', '.join(laws)} (in {path})")
    p = laws[name]
    try:
        return AlphaPowerLaw(v0=float(p["v0"]), vt=float(p["vt"]), alpha=float(p["alpha"]),
                             dibl=float(p.get("dibl", 0.08)), n_sub=float(p.get("n_sub", 1.5)),
                             name=name, source=str(p.get("source", "")))
    except KeyError as e:
        raise UserError(f"voltage law {name!r} in {path} lacks {e.args[0]!r}; give v0, vt and alpha") from None


def voltage_law_for(v0: float, preferred: str = "generic", path: str | Path | None = None) -> AlphaPowerLaw:
    """The voltage law for a MAC whose nominal supply is ``v0`` volts: ``preferred`` if its
    ``v0`` matches, else the first law in the table that does (UserError if none)."""
    law = load_voltage_law(preferred, path)
    if abs(law.v0 - v0) < 1e-9:
        return law
    path = Path(path) if path else data_dir() / "voltage_laws.toml"
    match = [n for n, p in read_toml(path, "voltage-law table").items() if abs(float(p.get("v0", -1)) - v0) < 1e-9]
    if not match:
        raise UserError(f"no voltage law in {path} has v0 = {v0:g} V (the Liberty library's supply); add one or pass --voltage-law with that v0")
    return load_voltage_law(match[0], path)


def load_dvfs(name_or_path: str | Path, full_delay_ps: float, law: AlphaPowerLaw, anchor_hz: float | None = None) -> DvfsTable:
    """Load a DVFS table (``data/dvfs/<name>.toml`` or a path).

    ``full_delay_ps`` is the nominal-voltage delay of the full code grid (ps). Without
    ``anchor_hz`` (anchor ``characterised``) it sets ``f0 = 1/(full_delay_ps·(1+margin))``; with it
    (anchor ``nominal``) ``f0 = anchor_hz`` and delays are scaled so the full grid meets ``f0`` exactly.
    """
    p = data_file(name_or_path, "dvfs", "DVFS table")
    raw = read_toml(p, "DVFS table")
    if not full_delay_ps > 0:
        raise UserError(f"full-grid delay must be positive, got {full_delay_ps} ps")
    margin = float(raw.get("margin", 0.05))
    f0 = 1e12 / (full_delay_ps * (1 + margin)) if anchor_hz is None else float(anchor_hz)
    if not f0 > 0:
        raise UserError(f"clock anchor must be a positive frequency, got {anchor_hz} Hz")
    factor = 1.0 if anchor_hz is None else 1e12 / (f0 * (1 + margin) * full_delay_ps)
    levels = []
    for i, lv in enumerate(raw.get("levels", [])):
        try:
            levels.append(DvfsLevel(str(lv["name"]), float(lv["voltage_rel"]) * law.v0, float(lv["freq_rel"]) * f0))
        except KeyError as e:
            raise UserError(f"DVFS table {p}: level {i} lacks {e.args[0]!r}; give name, voltage_rel, freq_rel") from None
    if not levels:
        raise UserError(f"DVFS table {p} lists no [[levels]]; add at least the nominal level")
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        raise UserError(f"DVFS table {p} repeats a level name; names must be unique")
    return DvfsTable(p.stem, tuple(levels), margin, float(raw.get("switch_time_s", 0.0)),
                     float(raw.get("switch_energy_j", 0.0)), law, factor, f0, "characterised" if anchor_hz is None else "nominal")
