"""``plan.json`` (docs/contracts.md §6): write from a solve, read back with checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import find_key, provenance, read_json, sha256_file, write_json
from ..errors import UserError
from .problem import Problem, evaluate
from .result import Result


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _json_safe(x: Any) -> Any:
    """inf/nan → None, recursively (plan.json stays strict JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def plan_dict(problem: Problem, result: Result, scenario: dict, costs_dir: str | Path) -> dict:
    if not result.has_plan:
        raise ValueError("result has no plan")
    p, a = problem, result.assignment
    cd = Path(costs_dir)
    meta = read_json(cd / "meta.json", "costs meta")
    cbs = read_json(cd / "codebooks.json", "codebooks file")
    cbs = cbs["codebooks"] if isinstance(cbs, dict) else cbs
    lv = read_json(cd / "levels.json", "levels file")["levels"]
    ev = evaluate(p, a)
    tile_cb = a.tile_codebook(p)
    names = np.array(p.codebook_names, dtype=object)
    return {
        "meta": provenance(costs=str(cd)) | {
            "costs_sha256": sha256_file(cd / "meta.json"),
            "model_sha256": find_key(meta, "model_sha256"),
            "profile_sha256": find_key(meta, "profile_sha256"),
            "error_model": meta.get("error_model", "local"), "error_units": meta.get("error_units"),
        },
        "scenario": _json_safe(scenario),
        "solver": {"name": result.solver, "status": result.status, "objective": _finite(result.objective),
                   "bound": _finite(result.bound), "gap": _finite(result.gap), "wall_s": result.wall_s},
        "predicted": {"latency_s": ev.latency, "energy_j": ev.energy, "error": ev.error,
                      "error_rel": ev.error / p.normaliser},
        "levels": {x["name"]: {"voltage_v": x["voltage_v"], "freq_hz": x["freq_hz"]} for x in lv if x["name"] in p.level_names},
        "codebooks": {c["name"]: list(c["codes"]) for c in cbs if c["name"] in p.codebook_names},
        "domains": [{"domain": p.domain_names[d], "layers": p.domain_layers[d], "level": p.level_names[a.level[d]]}
                    for d in range(p.L)],
        "tile_codebook": names[tile_cb].tolist(),
    }


def write_plan(path: str | Path, problem: Problem, result: Result, scenario: dict, costs_dir: str | Path) -> Path:
    return write_json(path, plan_dict(problem, result, scenario, costs_dir))


def read_plan(path: str | Path, costs_dir: str | Path | None = None) -> dict:
    """Load plan.json; with ``costs_dir``, refuse a plan made from other cost tables."""
    d = read_json(path, "plan file")
    for k in ("meta", "solver", "predicted", "levels", "codebooks", "domains", "tile_codebook"):
        if k not in d:
            raise UserError(f"plan {path} lacks {k!r}; regenerate it with `halo-opt plan`")
    if costs_dir is not None:
        sha = sha256_file(Path(costs_dir) / "meta.json")
        if d["meta"].get("costs_sha256") != sha:
            raise UserError(f"plan {path} was made from other cost tables than {costs_dir}; re-plan with these costs")
    return d
