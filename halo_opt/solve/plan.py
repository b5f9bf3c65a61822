"""Problem + Result → the plan artifact (:mod:`halo_opt.planfile`, docs/contracts.md §6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import find_key, provenance, sha256_file
from ..costfolder import load_costs_json
from ..planfile import PlanFile, load_plan, save_plan, validate
from .problem import Problem, evaluate
from .result import Result


def plan_file(problem: Problem, result: Result, scenario: dict, costs_dir: str | Path) -> PlanFile:
    """The typed plan of a solve (codebook codes and level clocks from the cost folder)."""
    if not result.has_plan:
        raise ValueError("result has no plan")
    p, a = problem, result.assignment
    cd = Path(costs_dir)
    meta, cbs, lvf = load_costs_json(cd)
    lv = [x.model_dump() for x in lvf.levels]
    ev = evaluate(p, a)
    runs = a.runs(p)
    names = np.array(p.codebook_names, dtype=object)
    return validate({
        "format_version": 2,
        "meta": provenance(costs=str(cd)) | {
            "costs_sha256": sha256_file(cd / "meta.json"),
            "model_sha256": find_key(meta, "model_sha256"),
            "profile_sha256": find_key(meta, "profile_sha256"),
            "error_model": meta.get("error_model", "local"), "error_units": meta.get("error_units"),
        },
        "scenario": scenario,
        "solver": {"name": result.solver, "status": result.status, "objective": result.objective,
                   "bound": result.bound, "gap": result.gap},
        "predicted": {"latency_s": ev.latency, "energy_j": ev.energy, "error": ev.error, "error_rel": p.relative(ev.error),
                      "switches": ev.switches},
        "levels": {x["name"]: {"voltage_v": x["voltage_v"], "freq_hz": x["freq_hz"]} for x in lv if x["name"] in p.level_names},
        "codebooks": {c["name"]: list(c["codes"]) for c in cbs if c["name"] in p.codebook_names},
        "domains": [{"domain": p.domain_names[d], "layers": p.domain_layers[d], "level": p.level_names[a.level[d]]}
                    | ({"runs": [p.level_names[v] for v in runs[d]]} if p.fold else {}) for d in range(p.L)],
        "tile_codebook": names[a.tile_codebook(p)].tolist(),
        **({"granularity": "fold", "tile_level": np.array(p.level_names, dtype=object)[a.tile_level(p)].tolist()} if p.fold else {}),
    })


def plan_dict(problem: Problem, result: Result, scenario: dict, costs_dir: str | Path) -> dict:
    return plan_file(problem, result, scenario, costs_dir).to_dict()


def write_plan(path: str | Path, problem: Problem, result: Result, scenario: dict, costs_dir: str | Path) -> Path:
    return save_plan(path, plan_file(problem, result, scenario, costs_dir))


def read_plan(path: str | Path, costs_dir: str | Path | None = None) -> dict:
    """Load plan.json (validated, :func:`halo_opt.planfile.load_plan`) as a dict."""
    return load_plan(path, costs_dir).to_dict()
