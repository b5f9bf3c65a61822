"""Read and cross-check the executor's inputs: plan (contract §6), cost folder (§4),
calibration Hessians (§3).

Every check that can fail on user input raises a one-line :class:`UserError`: a plan made
from another cost folder (hash of ``costs/meta.json`` differs — another model or another
hardware profile), a plan whose tile list does not match ``tiles.parquet``, a codebook or
level the cost folder does not know, a tile whose codebook misses its level's timing, a
layer with no Hessian.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import find_key, read_json, read_parquet, sha256_file
from ..errors import UserError, require


@dataclass
class CostFolder:
    """The parts of a cost folder the executor uses (see contract §4)."""

    path: Path
    meta: dict
    sha256: str  # SHA-256 of meta.json, what plans record as ``costs_sha256``
    layers: pd.DataFrame
    tiles: pd.DataFrame
    errors: pd.DataFrame
    latency: pd.DataFrame
    codebooks: dict[str, dict]  # name -> {"codes", "delay_ps", "energy_fj", ...}
    levels: dict[str, dict]  # name -> {"voltage_v", "freq_hz", "leak_power_w"}
    compat: dict[str, dict[str, float | None]]
    errors_local: pd.DataFrame | None = None  # the local table when ``errors`` is another error model's

    @property
    def error_model(self) -> str:
        return self.meta.get("error_model", "local")

    def local_errors(self) -> pd.DataFrame:
        """The layer-local error table (what per-layer measured output errors compare with)."""
        return self.errors if self.error_model == "local" or self.errors_local is None else self.errors_local

    def layer_tiles(self, layer: str) -> pd.DataFrame:
        return self.tiles[self.tiles["layer"] == layer]

    def damp(self, layer: str) -> float:
        row = self.layers[self.layers["layer"] == layer]
        return float(row["damp"].iloc[0]) if "damp" in row and len(row) else 0.0


def load_costs(path: str | Path) -> CostFolder:
    """Load a cost folder; missing/corrupt files become a one-line UserError."""
    p = Path(path)
    require(p.is_dir(), f"cost folder {p} not found; run `halo-opt costs` first or fix --costs")
    meta = read_json(p / "meta.json", "cost metadata")
    cb = read_json(p / "codebooks.json", "codebooks")
    lv = read_json(p / "levels.json", "levels")
    try:
        codebooks = {c["name"]: c for c in cb["codebooks"]}
        levels = {v["name"]: v for v in lv["levels"]}
        compat = lv["compat"]
    except (KeyError, TypeError):
        raise UserError(f"cost folder {p}: codebooks.json/levels.json lack 'codebooks'/'levels'/'compat'; regenerate with `halo-opt costs`") from None
    tiles = read_parquet(p / "tiles.parquet", "tile table")
    need = {"tile", "layer", "row0", "row1", "col0", "col1", "macs"}
    require(need <= set(tiles.columns), f"{p / 'tiles.parquet'} lacks columns {sorted(need - set(tiles.columns))}; regenerate it")
    tiles = tiles.sort_values("tile").reset_index(drop=True)
    require((tiles["tile"].to_numpy() == np.arange(len(tiles))).all(), f"{p / 'tiles.parquet'}: tile ids are not 0..G-1; regenerate it")
    errors = read_parquet(p / "errors.parquet", "error table").sort_values("tile").reset_index(drop=True)
    latency = read_parquet(p / "latency.parquet", "latency table") if (p / "latency.parquet").exists() else pd.DataFrame(columns=["layer", "level", "seconds"])
    local = (read_parquet(p / "errors_local.parquet", "local error table").sort_values("tile").reset_index(drop=True)
             if (p / "errors_local.parquet").exists() else None)
    return CostFolder(p, meta, sha256_file(p / "meta.json"), read_parquet(p / "layers.parquet", "layer table"),
                      tiles, errors, latency, codebooks, levels, compat, local)


def load_plan(path: str | Path) -> dict:
    """Read plan.json (contract §6) and check its shape."""
    plan = read_json(path, "plan")
    for key in ("meta", "codebooks", "domains", "tile_codebook"):
        require(isinstance(plan, dict) and key in plan, f"plan {path} has no '{key}'; regenerate it with `halo-opt plan`")
    return plan


def check_plan(plan: dict, costs: CostFolder, layers: list[str] | None = None) -> dict[str, str]:
    """Check ``plan`` against ``costs``; return ``{layer: level}``.

    Raises UserError on: another cost folder (hash), tile count mismatch, unknown codebook
    or level, a codebook whose codes differ from the cost folder's, a tile whose codebook
    misses its domain level's timing (compat null), a planned layer not in ``layers``.
    """
    sha = plan["meta"].get("costs_sha256")
    require(sha == costs.sha256, f"plan was made from another cost folder (costs_sha256 {str(sha)[:12]} != {costs.sha256[:12]} of {costs.path}): "
            "another model or hardware profile; re-plan with these costs or pass the matching --costs")
    for k in ("model_sha256", "profile_sha256"):
        mine = find_key(costs.meta, k)
        if mine is not None and plan["meta"].get(k) is not None:
            what = "another model" if k == "model_sha256" else "another hardware profile"
            require(mine == plan["meta"][k], f"plan is for {what} ({k} {str(plan['meta'][k])[:12]} != cost folder's {str(mine)[:12]}); "
                    "re-plan with these costs or pass the matching --costs")
    tc = plan["tile_codebook"]
    require(len(tc) == len(costs.tiles), f"plan names {len(tc)} tiles but {costs.path / 'tiles.parquet'} has {len(costs.tiles)}; re-plan with these costs")
    for name, codes in plan["codebooks"].items():
        require(name in costs.codebooks, f"plan codebook '{name}' is not in {costs.path / 'codebooks.json'}; re-plan with these costs")
        require(sorted(codes) == sorted(costs.codebooks[name]["codes"]), f"plan codebook '{name}' has other codes than the cost folder's; re-plan")
    unknown = set(tc) - set(plan["codebooks"])
    require(not unknown, f"plan tile_codebook uses codebooks {sorted(unknown)[:3]} absent from its 'codebooks'; regenerate the plan")
    level_of: dict[str, str] = {}
    for d in plan["domains"]:
        require(d["level"] in costs.levels, f"plan domain '{d['domain']}' uses level '{d['level']}' not in {costs.path / 'levels.json'}; re-plan")
        for layer in d["layers"]:
            level_of[layer] = d["level"]
    tile_layers = costs.tiles["layer"].to_numpy()
    missing = sorted(set(tile_layers) - set(level_of))
    require(not missing, f"plan domains do not cover layer '{missing[0] if missing else ''}'; re-plan with these costs")
    if layers is not None:
        absent = [l for l in dict.fromkeys(tile_layers) if l not in set(layers)]
        require(not absent, f"planned layer '{absent[0] if absent else ''}' is not a linear layer of the model; the plan is for another model, pass the right --model")
    for g, (layer, cb) in enumerate(zip(tile_layers, tc)):
        lvl = level_of[layer]
        slack = costs.compat.get(cb, {}).get(lvl)
        require(slack is not None, f"plan tile {g} ({layer}) uses codebook '{cb}' that misses the timing of level '{lvl}'; the plan is invalid, re-plan")
    return level_of


@dataclass
class Hessian:
    H: "Any"  # torch float64 [K, K], undamped (2/n) Σ x xᵀ
    n_tokens: int


def load_hessian(calib: str | Path, layer: str) -> Hessian:
    """``calib/hessians/<layer>.safetensors`` -> H (float64, undamped) and its token count
    (read by :func:`halo_opt.calibration.hessian.load_hessian`)."""
    from ..calibration.hessian import load_hessian as _load

    t = _load(calib, layer)
    require("H" in t, f"Hessian file of layer '{layer}' in {calib} has no tensor 'H'; rerun `halo-opt calibrate`")
    n = int(t["n_tokens"].item()) if "n_tokens" in t else 0
    return Hessian(t["H"].double(), n)
