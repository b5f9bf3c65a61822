"""MacProfile: the per-weight-code timing and energy table of one MAC design.

One row per code ``q`` held in the MAC (``y = p + a*w`` with ``w = q``):

=================  =====  =====================================================================
column             unit   meaning
=================  =====  =====================================================================
``code``           int    weight code: the value for integer formats (two's complement when
                          signed), the unsigned bit pattern for floating-point ones
``value``          —      floating-point formats only: the number the code stands for (float64),
                          from the weight format ``meta['format']`` (:mod:`halo_opt.formats`;
                          absent = the integer format of ``meta['wbits']``/``meta['signed']``, whose
                          values are the codes: :attr:`MacProfile.values` serves both)
``delay_static_ps`` ps    case-analysis delay: ``w`` bits constant, longest path over live nets
``delay_float_ps``  ps    sensitised floating-mode delay, max over sampled (a, p) vectors (<= static)
``energy_fj``       fJ    dynamic energy per MAC operation at ``meta['v0']`` with ``w`` held
=================  =====  =====================================================================

Optional breakdown columns (profiles characterized with a Liberty library; absent in older
profiles and user tables, which stay loadable):

=======================  =====  ===============================================================
``energy_switch_fj``      fJ    net switching ½·C·V² per MAC (part of ``energy_fj``)
``energy_internal_fj``    fJ    Liberty ``internal_power`` per MAC (the rest of ``energy_fj``)
``leakage_nw``            nW    mean state-dependent leakage power with ``w`` held (not in
                                ``energy_fj``; at clock period T ns it adds ``leakage_nw·T`` fJ)
=======================  =====  ===============================================================

Registered designs add ``stage_static_ps`` / ``stage_float_ps``: the weight-dependent
(multiplier) stage alone; the delay columns are then the cycle, ``max`` of that and the
weight-independent floor of the accumulate stage (``meta['stages']``).

``value`` is derived from ``code`` and the format, so it is not part of :meth:`MacProfile.sha256`;
it is a column (in memory and in ``profile.csv``/``.parquet``) only for floating-point formats, so
integer profiles are byte-identical to those made before formats existed. A loaded FP table gets
it filled in, and a given ``value`` column must agree with the format (integers: with the code).

Profiles round-trip through CSV or Parquet plus a JSON sidecar for ``meta``, so users can bring
tables from their own EDA flow (only ``code`` and one delay column are required; missing
columns are filled from the others and the fill is recorded in ``meta['filled']``). A table
that gives a per-code maximum clock instead (a column in :data:`CLOCK_COLUMNS`, e.g.
``max_freq_ghz``) is converted with :func:`delay_from_clock` (``meta['converted']`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import atomic_path, read_json, sha256_json, write_json
from ..errors import UserError
from ..formats import NumberFormat, get_format, int_format

COLUMNS = ("code", "delay_static_ps", "delay_float_ps", "energy_fj")
OPTIONAL_COLUMNS = ("energy_switch_fj", "energy_internal_fj", "leakage_nw")
STAGE_COLUMNS = ("stage_static_ps", "stage_float_ps")
TIMING_MODES = {"static": "delay_static_ps", "float": "delay_float_ps"}
#: per-code maximum-clock columns a user table may give instead of a delay, with their unit in Hz
CLOCK_COLUMNS = {"max_freq_ghz": 1e9, "freq_ghz": 1e9, "fmax_ghz": 1e9, "max_freq_mhz": 1e6, "freq_mhz": 1e6, "fmax_mhz": 1e6}


def delay_from_clock(freq, unit_hz: float = 1e9) -> np.ndarray:
    """Per-code delay (ps) from a per-code maximum clock: ``d = 1 / f`` (``f`` in units of
    ``unit_hz``: 1e9 for GHz). The delay is the clock period at which that code just meets
    timing, i.e. it already includes whatever guard band the source applied."""
    f = np.asarray(freq, dtype=np.float64)
    if not np.isfinite(f).all() or (f <= 0).any():
        raise UserError("per-code clock values must be positive and finite to convert them to delays")
    return 1e12 / (f * unit_hz)


@dataclass
class MacProfile:
    """Per-code delay (ps) and energy (fJ) of one MAC design; ``meta`` says which design."""

    table: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = _validated(self.table, self.meta)

    # -- views -----------------------------------------------------------------------------
    @property
    def codes(self) -> np.ndarray:
        return self.table["code"].to_numpy(np.int64)

    @property
    def values(self) -> np.ndarray:
        """The value each code stands for (float64; ``= codes`` for integer formats)."""
        if "value" in self.table:
            return self.table["value"].to_numpy(np.float64)
        return self.table["code"].to_numpy(np.float64)

    @property
    def format(self) -> NumberFormat:
        """The weight format (:func:`profile_format`)."""
        return profile_format(self.meta, self.table["code"].to_numpy(np.int64))

    def delay(self, timing: str = "static") -> np.ndarray:
        """Per-code delay in ps for ``timing`` in {'static', 'float'}."""
        if timing not in TIMING_MODES:
            raise UserError(f"unknown timing mode {timing!r}; use one of {sorted(TIMING_MODES)}")
        return self.table[TIMING_MODES[timing]].to_numpy(np.float64)

    @property
    def energy(self) -> np.ndarray:
        return self.table["energy_fj"].to_numpy(np.float64)

    @property
    def v0(self) -> float:
        return float(self.meta.get("v0", 1.0))

    def sha256(self) -> str:
        """Identity of the profile: hash of its numbers and design metadata."""
        table = self.table.drop(columns="value", errors="ignore")  # derived from code + meta['format']
        return sha256_json({"table": table.round(9).to_dict("list"), "meta": _identity(self.meta)})

    def spread(self, timing: str = "static") -> float:
        """max/min delay over the codes of nonzero value."""
        d = self.delay(timing)[self.values != 0]
        return float(d.max() / d.min())

    # -- IO --------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``profile.csv``, ``profile.parquet`` and ``profile.json`` (meta) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "profile.csv") as tmp:
            self.table.to_csv(tmp, index=False)
        with atomic_path(folder / "profile.parquet") as tmp:
            self.table.to_parquet(tmp, index=False)
        write_json(folder / "profile.json", {"meta": self.meta, "sha256": self.sha256()})
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "MacProfile":
        """Load from a folder written by :meth:`save`, or a CSV/Parquet table (+ optional JSON sidecar)."""
        path = Path(path)
        if path.is_dir():
            table_path = next((path / n for n in ("profile.parquet", "profile.csv") if (path / n).is_file()), None)
            if table_path is None:
                raise UserError(f"{path} holds no profile.parquet or profile.csv; run `halo-opt characterize --out {path}` first")
            meta_path = path / "profile.json"
        else:
            table_path, meta_path = path, path.with_suffix(".json")
        if not table_path.is_file():
            raise UserError(f"MAC profile {table_path} not found; check the path")
        try:
            df = pd.read_parquet(table_path) if table_path.suffix == ".parquet" else pd.read_csv(table_path)
        except Exception as e:
            raise UserError(f"MAC profile {table_path} is unreadable ({type(e).__name__}); regenerate or fix it") from None
        meta = read_json(meta_path, "profile metadata")["meta"] if meta_path.is_file() else {"source": str(table_path)}
        return cls(df, meta)


def profile_format(meta: dict[str, Any], codes: np.ndarray | None = None) -> NumberFormat:
    """The weight format of a profile: ``meta['format']`` when given, else the integer format of
    ``meta['wbits']`` and ``meta['signed']`` (without them: signed when a code is negative, and
    wide enough for the codes) as for every profile made before formats existed."""
    if meta.get("format"):
        return get_format(meta["format"])
    c = np.asarray(codes if codes is not None else [0], dtype=np.int64)
    signed = bool(meta["signed"]) if "signed" in meta else bool(c.min(initial=0) < 0)
    if "wbits" in meta:
        bits = int(meta["wbits"])
    else:
        mag = int(max(c.max(initial=0), -c.min(initial=0) - 1 if signed else 0))
        bits = max(1, mag.bit_length()) + int(signed)
    return int_format(bits, signed)


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    skip = {"wall_s", "created", "yosys_seconds"}
    return {k: v for k, v in meta.items() if k not in skip}


def _validated(df: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """Check columns and values; fill a missing delay/energy column from the others (recorded)."""
    df = df.copy()
    if "code" not in df.columns:
        raise UserError(f"MAC profile has no 'code' column (columns: {list(df.columns)}); add one with the integer weight codes")
    delays = [c for c in ("delay_static_ps", "delay_float_ps") if c in df.columns]
    clock = next((c for c in CLOCK_COLUMNS if c in df.columns), None)
    if not delays and clock is not None:
        df["delay_static_ps"] = delay_from_clock(df[clock], CLOCK_COLUMNS[clock])
        meta.setdefault("converted", f"delay_static_ps = 1/{clock} (delay_from_clock)")
        delays = ["delay_static_ps"]
    if not delays:
        raise UserError("MAC profile needs a delay column: 'delay_static_ps' or 'delay_float_ps' (ps per code), "
                        f"or a per-code clock column ({', '.join(CLOCK_COLUMNS)})")
    filled = []
    for col in ("delay_static_ps", "delay_float_ps"):
        if col not in df.columns:
            df[col] = df[delays[0]]
            filled.append(col)
    if "energy_fj" not in df.columns:
        df["energy_fj"] = 0.0
        filled.append("energy_fj")
    if filled:
        meta.setdefault("filled", filled)
    extra = [c for c in OPTIONAL_COLUMNS if c in df.columns]
    keep = list(COLUMNS) + [c for c in STAGE_COLUMNS if c in df.columns]
    has_value = "value" in df.columns
    df = df[keep + extra + (["value"] if has_value else [])].sort_values("code", kind="stable").reset_index(drop=True)
    given_value = df.pop("value") if has_value else None
    if df["code"].duplicated().any():
        raise UserError(f"MAC profile lists code {int(df['code'][df['code'].duplicated()].iloc[0])} twice; keep one row per code")
    num = df[keep[1:]].to_numpy(np.float64)
    if not np.isfinite(num).all() or (num < 0).any():
        raise UserError("MAC profile has negative, NaN or infinite delay/energy values; fix the table")
    if extra and not np.isfinite(df[extra].to_numpy(np.float64)).all():
        raise UserError(f"MAC profile has NaN or infinite values in {', '.join(extra)}; fix the table")
    if (df["delay_float_ps"] > df["delay_static_ps"] * (1 + 1e-9)).any():
        bad = int(df["code"][df["delay_float_ps"] > df["delay_static_ps"] * (1 + 1e-9)].iloc[0])
        raise UserError(f"MAC profile: floating-mode delay exceeds the static bound at code {bad}; the static delay must be a safe bound")
    df["code"] = df["code"].astype(np.int64)
    fmt = profile_format(meta, df["code"].to_numpy())
    codes = df["code"].to_numpy()
    if fmt.is_float and not fmt.is_code(codes).all():
        bad = int(codes[~fmt.is_code(codes)][0])
        raise UserError(f"MAC profile code {bad} is not a finite code of {fmt.name} ({fmt.describe_codes()}); fix the table or meta['format']")
    value = fmt.value(codes) if fmt.is_float else codes.astype(np.float64)
    if given_value is not None:
        given = pd.to_numeric(given_value, errors="coerce").to_numpy(np.float64)
        off = ~(given == value)
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise UserError(f"MAC profile: code {int(codes[i])} has value {given[i]} but {fmt.name} gives {value[i]}; "
                            "drop the value column (it is derived from the code and meta['format']) or fix it")
    if fmt.is_float:  # integer tables stay as they were before formats existed (values = codes)
        df["value"] = value
    return df


def fastest_codes(profile: MacProfile, n: int, column: str | None = None) -> set[int]:
    """The ``n`` codes of smallest delay (``column``; default the weight-dependent stage's static
    delay when the profile has one, else ``delay_static_ps``); ties go to the smaller ``|value|``,
    then the smaller code."""
    col = column or ("stage_static_ps" if "stage_static_ps" in profile.table else "delay_static_ps")
    t = profile.table
    order = np.lexsort((t["code"].to_numpy(), np.abs(profile.values), t[col].to_numpy()))
    return {int(c) for c in t["code"].to_numpy()[order[:n]]}


def compare_profiles(profile: MacProfile, reference: MacProfile, ns: tuple[int, ...] = (8, 16)) -> dict[str, Any]:
    """How well ``profile`` reproduces the per-code delay shape of ``reference`` on their common codes.

    ``spearman``: rank correlation of the per-code delays (the weight-dependent stage's when
    ``profile`` has one, so a registered design is compared by its multiplier stage, not by its
    possibly flat cycle); ``spread`` / ``ref_spread``: max/min over nonzero common codes;
    ``overlap_<n>``: how many of the ``n`` fastest common codes the two share.
    """
    from scipy.stats import spearmanr

    common = np.intersect1d(profile.codes, reference.codes)
    if common.size < 3:
        raise UserError(f"profiles share only {common.size} codes; compare tables of the same weight width")

    def on_common(p: MacProfile) -> MacProfile:
        t = p.table[p.table["code"].isin(common)].reset_index(drop=True)
        return MacProfile(t, dict(p.meta))

    a, b = on_common(profile), on_common(reference)
    col = "stage_static_ps" if "stage_static_ps" in a.table else "delay_static_ps"
    da, db = a.table[col].to_numpy(), b.delay("static")
    nz = a.values != 0
    out: dict[str, Any] = {"codes": int(common.size), "spearman": float(spearmanr(da, db).statistic),
                           "spread": float(da[nz].max() / da[nz].min()), "ref_spread": float(db[nz].max() / db[nz].min())}
    for n in ns:
        out[f"overlap_{n}"] = len(fastest_codes(a, n, col) & fastest_codes(b, n, "delay_static_ps"))
    return out
