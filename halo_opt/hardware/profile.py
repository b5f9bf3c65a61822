"""MacProfile: the per-weight-code timing and energy table of one MAC design.

One row per code ``q`` held in the MAC (``y = p + a*w`` with ``w = q``):

=================  =====  =====================================================================
column             unit   meaning
=================  =====  =====================================================================
``code``           int    weight value (two's complement value when signed)
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

Profiles round-trip through CSV or Parquet plus a JSON sidecar for ``meta``, so users can bring
tables from their own EDA flow (only ``code`` and one delay column are required; missing
columns are filled from the others and the fill is recorded in ``meta['filled']``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import atomic_path, read_json, sha256_json, write_json
from ..errors import UserError

COLUMNS = ("code", "delay_static_ps", "delay_float_ps", "energy_fj")
OPTIONAL_COLUMNS = ("energy_switch_fj", "energy_internal_fj", "leakage_nw")
TIMING_MODES = {"static": "delay_static_ps", "float": "delay_float_ps"}


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
        return sha256_json({"table": self.table.round(9).to_dict("list"), "meta": _identity(self.meta)})

    def spread(self, timing: str = "static") -> float:
        """max/min delay over nonzero codes."""
        d = self.delay(timing)[self.codes != 0]
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


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    skip = {"wall_s", "created", "yosys_seconds"}
    return {k: v for k, v in meta.items() if k not in skip}


def _validated(df: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """Check columns and values; fill a missing delay/energy column from the others (recorded)."""
    df = df.copy()
    if "code" not in df.columns:
        raise UserError(f"MAC profile has no 'code' column (columns: {list(df.columns)}); add one with the integer weight codes")
    delays = [c for c in ("delay_static_ps", "delay_float_ps") if c in df.columns]
    if not delays:
        raise UserError("MAC profile needs a delay column: 'delay_static_ps' or 'delay_float_ps' (ps per code)")
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
    df = df[list(COLUMNS) + extra].sort_values("code", kind="stable").reset_index(drop=True)
    if df["code"].duplicated().any():
        raise UserError(f"MAC profile lists code {int(df['code'][df['code'].duplicated()].iloc[0])} twice; keep one row per code")
    num = df[list(COLUMNS[1:])].to_numpy(np.float64)
    if not np.isfinite(num).all() or (num < 0).any():
        raise UserError("MAC profile has negative, NaN or infinite delay/energy values; fix the table")
    if extra and not np.isfinite(df[extra].to_numpy(np.float64)).all():
        raise UserError(f"MAC profile has NaN or infinite values in {', '.join(extra)}; fix the table")
    if (df["delay_float_ps"] > df["delay_static_ps"] * (1 + 1e-9)).any():
        bad = int(df["code"][df["delay_float_ps"] > df["delay_static_ps"] * (1 + 1e-9)].iloc[0])
        raise UserError(f"MAC profile: floating-mode delay exceeds the static bound at code {bad}; the static delay must be a safe bound")
    df["code"] = df["code"].astype(np.int64)
    return df
