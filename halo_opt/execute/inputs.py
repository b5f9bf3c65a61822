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

from ..artifacts import find_key
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
    tile_latency: pd.DataFrame | None = None  # tile × level seconds (fold granularity), when the folder has it

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

    @property
    def has_scales(self) -> bool:
        """Whether the cost stage kept its chosen scales (``build_costs(save_scales=True)``)."""
        from ..costfolder import SCALES_FILE

        return (self.path / SCALES_FILE).is_file()

    def scales(self, layer: str, n_out: int, n_col_blocks: int) -> np.ndarray:
        """The cost stage's chosen row scales of ``layer`` (when :attr:`has_scales`): float64
        ``[C, n_out, n_col_blocks]``, codebooks in :attr:`codebooks` order (NaN for ``mx`` codebooks)."""
        from ..costfolder import SCALES_FILE, load_layer_scales

        s = load_layer_scales(self.path, layer)
        want = (len(self.codebooks), n_out, n_col_blocks)
        require(s is not None and s.shape == want,
                f"{self.path / SCALES_FILE} holds {'no scales' if s is None else f'scales of shape {s.shape}'} for layer '{layer}' "
                f"(want {want}); delete the file or rebuild the costs with `halo-opt costs --save-scales`")
        return s


def load_costs(path: str | Path) -> CostFolder:
    """Load a cost folder through its one reader (:func:`halo_opt.costfolder.load_costs`), with the
    layer-local error table beside it when the folder's error model is another one."""
    from ..artifacts import read_parquet
    from ..costfolder import load_costs as _load

    c = _load(path)
    local = c.path / "errors_local.parquet"
    local = read_parquet(local, "local error table").sort_values("tile").reset_index(drop=True) if local.is_file() else None
    return CostFolder(c.path, c.meta, c.sha256, c.layers, c.tiles, c.errors, c.latency,
                      {b["name"]: b for b in c.codebooks}, {v["name"]: v for v in c.levels}, c.compat, local, c.tile_latency)


def load_plan(path: str | Path) -> dict:
    """Read plan.json (contract §6) through its one owner, :func:`halo_opt.planfile.load_plan`."""
    from ..planfile import load_plan as _load

    return _load(path).to_dict()


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
    tl = plan.get("tile_level")
    require(tl is None or len(tl) == len(tc), f"plan names {len(tl or [])} tile levels for {len(tc)} tiles; regenerate the plan")
    for g, (layer, cb) in enumerate(zip(tile_layers, tc)):
        lvl = level_of[layer] if tl is None else tl[g]
        require(lvl in costs.levels, f"plan tile {g} uses level '{lvl}' not in {costs.path / 'levels.json'}; re-plan")
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
