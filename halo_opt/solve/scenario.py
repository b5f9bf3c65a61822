"""Scenario files (``formulations/*.toml``): what to optimise and under which limits.

Flat TOML, every key optional except ``budget``::

    name = "performance"
    objective = "latency"            # latency | energy | weighted
    weights = { latency = 1.0, energy = 1.0 }   # weighted: w_lat·lat/lat_base + w_en·E/E_base
    budget = 0.01                    # relative error ε: Σ e ≤ ε · normaliser
    layer_budgets = { 'attention' = 0.005 }     # regex → ε of that layer's tr(W H Wᵀ)
    energy_cap_j = 1.0e-3            # J per workload pass
    latency_cap_s = 1.0e-3           # s per workload pass
    max_levels = 2                   # K
    max_switches = 4
    granularity = "layer"            # layer | block | model | fold (a level per tile = array fold)
    block_pattern = 'encoder\\.layer\\.(\\d+)'  # block key = first capture group
    tie_groups = ['^(.*)\\.(?:query|key|value)$']  # same first capture → one domain
    tile = [128, 128]                # checked against the cost tables
    codebooks = ["full", "fast4"]    # allowed codebook names ("int4": the 16-code uniform grid)
    levels = ["nominal", "turbo"]    # allowed level names ("nominal": the level at v0)

The ``*_base`` values are the hardware-agnostic baseline: every tile on ``full`` at the
nominal level.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..artifacts import read_toml
from ..errors import UserError

OBJECTIVES = ("latency", "energy", "weighted")
GRANULARITIES = ("layer", "block", "model", "fold")


@dataclass
class Scenario:
    budget: float
    name: str = "scenario"
    description: str = ""
    objective: str = "latency"
    weights: dict = field(default_factory=lambda: {"latency": 1.0, "energy": 1.0})
    layer_budgets: dict = field(default_factory=dict)
    energy_cap_j: float | None = None
    latency_cap_s: float | None = None
    max_levels: int | None = None
    max_switches: int | None = None
    granularity: str = "layer"
    block_pattern: str = r"layers?\.(\d+)\."
    tie_groups: list = field(default_factory=list)
    tile: list | None = None
    codebooks: list | None = None
    levels: list | None = None

    def __post_init__(self) -> None:
        _check(self.objective in OBJECTIVES, f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        _check(self.granularity in GRANULARITIES, f"granularity {self.granularity!r} is not one of {', '.join(GRANULARITIES)}")
        _check(isinstance(self.budget, (int, float)) and self.budget >= 0, "budget must be a relative error >= 0 (e.g. 0.01)")
        unknown = set(self.weights) - {"latency", "energy"}
        _check(not unknown, f"weights has unknown keys {sorted(unknown)}; use latency and energy")
        _check(all(w >= 0 for w in self.weights.values()), "weights must be >= 0")
        for k in ("energy_cap_j", "latency_cap_s"):
            v = getattr(self, k)
            _check(v is None or (isinstance(v, (int, float)) and v > 0), f"{k} must be a positive number")
        _check(self.max_levels is None or (isinstance(self.max_levels, int) and self.max_levels >= 1), "max_levels must be an integer >= 1")
        _check(self.max_switches is None or (isinstance(self.max_switches, int) and self.max_switches >= 0), "max_switches must be an integer >= 0")
        for pat in [self.block_pattern, *self.tie_groups, *self.layer_budgets]:
            try:
                re.compile(pat)
            except re.error as e:
                raise UserError(f"scenario: bad regex {pat!r} ({e}); fix the pattern") from None
        _check(self.tile is None or (len(self.tile) == 2 and all(isinstance(t, int) and t > 0 for t in self.tile)), "tile must be [rows, cols]")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_overrides(self, **kw) -> "Scenario":
        d = self.to_dict()
        d.update({k: v for k, v in kw.items() if v is not None})
        return Scenario(**d)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise UserError(f"scenario: {msg}")


def from_dict(d: dict, source: str = "scenario") -> Scenario:
    valid = [f.name for f in fields(Scenario)]
    for k in d:
        if k not in valid:
            close = difflib.get_close_matches(k, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
            raise UserError(f"{source}: unknown key {k!r}{hint}")
    if "budget" not in d:
        raise UserError(f"{source}: missing key 'budget' (relative error, e.g. budget = 0.01)")
    try:
        return Scenario(**d)
    except TypeError as e:
        raise UserError(f"{source}: {e}") from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"scenario file {path} not found; see formulations/*.toml for examples")
    d = read_toml(path, "scenario")
    return from_dict(d, f"scenario {path}")


def resolve_names(wanted: list[str] | None, names: list[str], aliases: dict[str, str], what: str) -> list[int]:
    """Indices of the allowed names (aliases resolved); UserError listing the valid names."""
    if wanted is None:
        return list(range(len(names)))
    out = []
    for w in wanted:
        n = w if w in names else aliases.get(w)
        if n is None or n not in names:
            raise UserError(f"scenario: unknown {what} {w!r}; valid: {', '.join(names + sorted(aliases))}")
        out.append(names.index(n))
    return sorted(set(out))


def is_inf(x) -> bool:
    return x is None or (isinstance(x, float) and math.isinf(x))
