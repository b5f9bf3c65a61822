"""The cost-table folder (docs/contracts.md §4): its typed JSON parts, its one reader and writer,
and the definitions every consumer shares (nominal level, baseline codebook).

Written by :func:`halo_opt.costs.build_costs` and the synthetic writers
(:mod:`halo_opt.solve.synthetic`, :mod:`halo_opt.execute.synthetic`); read by the planner
(:func:`halo_opt.solve.build.build_problem`, plan files) and the executor
(:func:`halo_opt.execute.inputs.load_costs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .artifacts import atomic_path, read_json, read_parquet, sha256_file, write_json, write_parquet
from .errors import UserError

FORMAT_VERSION = 1
#: the hardware-agnostic baseline codebook: the whole code grid
BASELINE_CODEBOOK = "full"
TABLES = {"layers": ["layer", "order", "tr_WHW"], "tiles": ["tile", "layer", "row0", "row1", "col0", "col1", "macs"],
          "errors": ["tile"], "latency": ["layer", "level", "seconds"]}
#: optional: the cost stage's chosen row scales, per layer ``[C, N_out, n_col_blocks]`` float64
#: (codebooks in ``codebooks.json`` order, column blocks of the tile width; NaN for ``mx`` codebooks)
SCALES_FILE = "scales.safetensors"


class Switch(BaseModel):
    time_s: float = Field(0.0, ge=0)
    energy_j: float = Field(0.0, ge=0)


class CostMeta(BaseModel):
    """``meta.json``: what the planner needs is typed; provenance and settings ride along."""

    model_config = ConfigDict(extra="allow")
    format_version: int = FORMAT_VERSION
    normaliser: float = Field(gt=0)  # Σ_l tr(W_l H_l W_lᵀ), error units
    v0: float = Field(gt=0)  # V, the voltage the per-code energies were characterised at
    tile: list[int] | None = None  # [R output rows, C input columns]
    switch: Switch = Switch()


class Codebook(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    codes: list[int]
    delay_ps: float
    energy_fj: float = Field(ge=0)
    family: str = ""


class Level(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    voltage_v: float = Field(gt=0)
    freq_hz: float = Field(gt=0)
    leak_power_w: float = Field(0.0, ge=0)


class LevelsFile(BaseModel):
    levels: list[Level]
    compat: dict[str, dict[str, float | None]]  # codebook → level → slack ps, or None if it misses timing


@dataclass
class CostTables:
    """A loaded cost folder."""

    path: Path
    meta: dict  # meta.json as written (validated by CostMeta)
    sha256: str  # SHA-256 of meta.json: what plans record as costs_sha256
    layers: pd.DataFrame
    tiles: pd.DataFrame  # sorted by tile, ids 0..T-1
    errors: pd.DataFrame  # sorted by tile
    latency: pd.DataFrame
    codebooks: list[dict]
    levels: list[dict]
    compat: dict[str, dict[str, float | None]]
    tile_latency: pd.DataFrame | None = None  # tile × level seconds (one fold each), when the tile is the array's fold

    @property
    def v0(self) -> float:
        return float(self.meta["v0"])

    def nominal_level(self) -> str:
        """THE nominal level: see :func:`nominal_level`."""
        return nominal_level(self.levels, self.compat, self.v0)


def nominal_level(levels: list[dict], compat: dict, v0: float) -> str:
    """The nominal level: among the levels the baseline codebook (``full``) meets, the one whose
    voltage is closest to v0, the fastest on a tie; if ``full`` meets none (or is absent), the
    same rule over every level."""
    ok = [x for x in levels if (compat.get(BASELINE_CODEBOOK) or {}).get(x["name"]) is not None] or list(levels)
    if not ok:
        raise UserError("the cost folder lists no DVFS levels; regenerate it with `halo-opt costs`")
    return min(ok, key=lambda x: (abs(float(x["voltage_v"]) - v0), -float(x["freq_hz"])))["name"]


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise UserError(msg)


def _model(cls, obj: Any, what: str):
    try:
        return cls.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(f"{what}: {where}: {err['msg']}; regenerate the cost tables with `halo-opt costs`") from None


def load_costs_json(path: str | Path) -> tuple[dict, list[dict], LevelsFile]:
    """The JSON parts of a cost folder, validated: (meta, codebooks, levels file)."""
    d = Path(path)
    _check(d.is_dir(), f"cost folder {d} not found; run `halo-opt costs` first or check the path")
    raw_meta = read_json(d / "meta.json", "costs meta")
    meta = _model(CostMeta, raw_meta, f"{d / 'meta.json'}")
    _check(meta.format_version == FORMAT_VERSION, f"{d / 'meta.json'} has format_version {meta.format_version}, this "
           f"halo-opt reads {FORMAT_VERSION}; regenerate the cost tables with `halo-opt costs`")
    cbs = read_json(d / "codebooks.json", "codebooks file")
    cbs = cbs.get("codebooks") if isinstance(cbs, dict) else cbs
    _check(isinstance(cbs, list), f"{d / 'codebooks.json'} has no 'codebooks' list; regenerate the cost tables")
    books = [_model(Codebook, c, f"{d / 'codebooks.json'}").model_dump() for c in cbs]
    lv = _model(LevelsFile, read_json(d / "levels.json", "levels file"), f"{d / 'levels.json'}")
    return raw_meta, books, lv


def load_costs(path: str | Path) -> CostTables:
    """Read and check a cost folder; every problem is a one-line UserError naming the file."""
    d = Path(path)
    raw_meta, books, lv = load_costs_json(d)
    t = {k: read_parquet(d / f"{k}.parquet", f"{k} table") for k in TABLES}
    for k, cols in TABLES.items():
        miss = [c for c in cols if c not in t[k].columns]
        _check(not miss, f"{k}.parquet in {d} lacks columns {miss}; regenerate the costs with `halo-opt costs`")
    tiles = t["tiles"].sort_values("tile").reset_index(drop=True)
    _check((tiles["tile"].to_numpy() == range(len(tiles))).all(), f"{d / 'tiles.parquet'}: tile ids are not 0..T-1; regenerate the costs")
    errors = t["errors"].sort_values("tile").reset_index(drop=True)
    names = [b["name"] for b in books]
    miss = [n for n in names if n not in errors.columns]
    _check(not miss and len(errors) == len(tiles) and not errors[names].isna().any().any(),
           f"errors.parquet in {d} lacks codebooks {miss} or some tiles; regenerate the costs")
    tl = None
    if (d / "tile_latency.parquet").is_file():
        tl = read_parquet(d / "tile_latency.parquet", "tile latency table")
        miss = [c for c in ("tile", "level", "seconds") if c not in tl.columns]
        _check(not miss, f"tile_latency.parquet in {d} lacks columns {miss}; regenerate the costs with `halo-opt costs`")
    return CostTables(d, raw_meta, sha256_file(d / "meta.json"), t["layers"], tiles, errors, t["latency"], books,
                      [x.model_dump() for x in lv.levels], lv.compat, tl)


def load_layer_scales(path: str | Path, layer: str):
    """The cost stage's chosen scales of ``layer`` (numpy ``[C, N_out, n_col_blocks]``) from
    :data:`SCALES_FILE`, or None when the folder keeps none (``build_costs(save_scales=False)``)."""
    f = Path(path) / SCALES_FILE
    if not f.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(f), "np") as st:
            return st.get_tensor(layer) if layer in st.keys() else None
    except (SafetensorError, OSError) as e:
        raise UserError(f"{f} is unreadable ({e}); delete it or rebuild the costs with `halo-opt costs --save-scales`") from None


def save_costs(path: str | Path, meta: dict, layers: pd.DataFrame, tiles: pd.DataFrame, errors: pd.DataFrame,
               latency: pd.DataFrame, codebooks: list[dict], levels: list[dict], compat: dict,
               codebooks_meta: dict | None = None, extra_tables: dict[str, pd.DataFrame] | None = None,
               extra_files: dict[str, bytes] | None = None) -> Path:
    """Write the cost folder atomically (JSON parts validated, ``format_version`` stamped).
    ``extra_tables`` (``name`` → ``name.parquet``) and ``extra_files`` (file name → bytes) go in
    the same atomic write, for stages that add their own parts."""
    meta = dict(meta, format_version=FORMAT_VERSION)
    _model(CostMeta, meta, "cost meta")
    books = [_model(Codebook, c, "codebook").model_dump() for c in codebooks]
    lv = _model(LevelsFile, {"levels": levels, "compat": compat}, "levels").model_dump()
    for k, df in (("layers", layers), ("tiles", tiles), ("errors", errors), ("latency", latency)):
        miss = [c for c in TABLES[k] if c not in df.columns]
        if miss:
            raise ValueError(f"{k} table lacks columns {miss}")
    out = Path(path)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write_parquet(tmp / "layers.parquet", layers)
        write_parquet(tmp / "tiles.parquet", tiles)
        write_parquet(tmp / "errors.parquet", errors)
        write_parquet(tmp / "latency.parquet", latency)
        write_json(tmp / "codebooks.json", {"meta": codebooks_meta or {}, "codebooks": books})
        write_json(tmp / "levels.json", lv)
        for name, df in (extra_tables or {}).items():
            write_parquet(tmp / f"{name}.parquet", df)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        write_json(tmp / "meta.json", meta)
    return out
