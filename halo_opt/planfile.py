"""The plan artifact (docs/contracts.md §6): ``plan.json``, its typed model, its one reader and writer.

Written by the planner stage (:func:`halo_opt.solve.planner.plan`), the Pareto sweep and the
synthetic test writer; read by the executor, the report and the CLI. The file holds only what
is a function of the inputs (no wall times), so the same inputs and seed give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .artifacts import read_json, sha256_file, write_json
from .errors import UserError

FORMAT = "halo-opt plan"
FORMAT_VERSION = 2


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanMeta(BaseModel):
    """Provenance: package version, inputs, and the identities the executor checks."""

    model_config = ConfigDict(extra="allow")
    costs_sha256: str  # SHA-256 of the cost folder's meta.json
    model_sha256: str | None = None
    profile_sha256: str | None = None


class SolverInfo(_Model):
    name: str
    status: str
    objective: float | None = None
    bound: float | None = None  # valid lower bound on the optimum
    gap: float | None = None  # (objective − bound) / objective

    @field_validator("objective", "bound", "gap", mode="before")
    @classmethod
    def _finite(cls, v):
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


class Predicted(_Model):
    latency_s: float | None = None
    energy_j: float | None = None
    error: float | None = None  # budget units (Σ e_gc)
    error_rel: float | None = None  # error / normaliser
    switches: int | None = None  # level changes per pass


class Level(_Model):
    voltage_v: float
    freq_hz: float


class Domain(_Model):
    domain: str
    layers: list[str]
    level: str  # the level the domain runs (fold granularity: the one it begins with)
    runs: list[str] | None = None  # fold granularity: the levels its folds run, in order (one run each)


class PlanFile(_Model):
    format: Literal["halo-opt plan"] = FORMAT
    format_version: Literal[2] = FORMAT_VERSION
    meta: PlanMeta
    scenario: dict[str, Any] = {}
    solver: SolverInfo
    predicted: Predicted = Predicted()
    levels: dict[str, Level]
    codebooks: dict[str, list[int]]
    domains: list[Domain]
    tile_codebook: list[str]  # codebook per tile, in tiles.parquet order
    tile_level: list[str] | None = None  # fold granularity: level per tile (None: its domain's)
    granularity: str = "layer"  # "fold": tile_level holds each tile's level

    @model_validator(mode="after")
    def _names(self) -> "PlanFile":
        unknown = set(self.tile_codebook) - set(self.codebooks)
        if unknown:
            raise ValueError(f"tile_codebook uses codebooks {sorted(unknown)[:3]} absent from 'codebooks'")
        bad = [d.level for d in self.domains if d.level not in self.levels]
        bad += [v for d in self.domains for v in (d.runs or []) if v not in self.levels]
        bad += [v for v in (self.tile_level or []) if v not in self.levels]
        if bad:
            raise ValueError(f"domains or tiles use levels {sorted(set(bad))[:3]} absent from 'levels'")
        if (self.granularity == "fold") != (self.tile_level is not None) or (
                self.tile_level is not None and len(self.tile_level) != len(self.tile_codebook)):
            raise ValueError("granularity 'fold' needs tile_level, one level per tile (and only then)")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _json_safe(x: Any) -> Any:
    """inf/nan → None, recursively (plan.json stays strict JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def validate(d: dict | PlanFile, source: str = "plan") -> PlanFile:
    """A PlanFile from a dict; UserError naming the first problem otherwise."""
    if isinstance(d, PlanFile):
        return d
    if not isinstance(d, dict):
        raise UserError(f"{source} is not a JSON object; regenerate it with `halo-opt plan`")
    if d.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{source} has format_version {d.get('format_version')!r}, this halo-opt reads {FORMAT_VERSION}; "
                        "regenerate it with `halo-opt plan`")
    try:
        return PlanFile.model_validate(_json_safe(d))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "plan"
        raise UserError(f"{source}: {where}: {err['msg']}; regenerate it with `halo-opt plan`") from None


def save_plan(path: str | Path, plan: PlanFile | dict) -> Path:
    """Write ``plan.json`` atomically (validated)."""
    return write_json(path, validate(plan).to_dict())


def load_plan(path: str | Path, costs_dir: str | Path | None = None) -> PlanFile:
    """Read and validate ``plan.json``; with ``costs_dir``, refuse a plan made from other cost tables."""
    plan = validate(read_json(path, "plan file"), f"plan {path}")
    if costs_dir is not None and plan.meta.costs_sha256 != sha256_file(Path(costs_dir) / "meta.json"):
        raise UserError(f"plan {path} was made from other cost tables than {costs_dir}; re-plan with these costs")
    return plan
