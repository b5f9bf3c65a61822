"""The demo's report: summary table (speedup / energy saving vs the INT8 baseline, share of the
possible gain), Pareto fronts, plan map, per-code profile plot, validation per plan."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd

from ..artifacts import read_json, write_text


def _f(v, fmt: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, fmt)


def summarise(rows: list[dict]) -> list[dict]:
    """Add speedup and energy saving over ``baseline_int8`` and the share of the possible gain
    (baseline → physical bound) each plan realises."""
    base = next((r for r in rows if r["scenario"] == "baseline_int8" and "pred_latency_s" in r), None)
    bound = next((r for r in rows if r["scenario"] == "physical_bound" and "pred_latency_s" in r), None)
    out = []
    for r in rows:
        r = dict(r)
        if base and "pred_latency_s" in r:
            r["speedup"] = base["pred_latency_s"] / r["pred_latency_s"]
            r["energy_saving"] = 1 - r["pred_energy_j"] / base["pred_energy_j"]
            if bound and base["pred_latency_s"] > bound["pred_latency_s"]:
                r["share_of_possible_speedup"] = (base["pred_latency_s"] - r["pred_latency_s"]) / (base["pred_latency_s"] - bound["pred_latency_s"])
        out.append(r)
    return out


def summary_table(rows: list[dict]) -> str:
    """Markdown table of every plan: prediction, measured accuracy, validation."""
    metrics = sorted({k[5:] for r in rows for k in r if k.startswith("meas_")})
    head = ["scenario", "solver", "status", "gap", "error ε (rel)", "latency (µs)", "speedup vs INT8",
            "share of possible speedup", "energy (µJ)", "energy saving", *metrics, "ρ pred/meas", "timing misses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["scenario"], r["solver"], r.get("status", ""), _f(r.get("gap"), ".1e"), _f(r.get("pred_error_rel"), ".4f"),
                 _f(r.get("pred_latency_s", math.nan) * 1e6, ".2f"), _f(r.get("speedup"), ".3f") + ("×" if r.get("speedup") else ""),
                 _f(100 * r["share_of_possible_speedup"], ".0f") + "%" if r.get("share_of_possible_speedup") is not None else "–",
                 _f(r.get("pred_energy_j", math.nan) * 1e6, ".2f"),
                 _f(100 * r["energy_saving"], ".1f") + "%" if r.get("energy_saving") is not None else "–",
                 *[_f(r.get(f"meas_{m}"), ".4f") for m in metrics], _f(r.get("spearman"), ".2f"), _f(r.get("timing_misses"), "d")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_demo_report(out: Path, cfg, rows: list[dict], baselines: dict, profile: Path, costs: Path,
                      figs: dict[str, Path], reports: dict[str, Path], stages) -> Path:
    """Write ``report.md`` and its figures into ``out``."""
    from .plan_map import plot_plan_map

    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    shutil.copyfile(profile / "profile.png", figdir / "profile.png")
    for goal, png in figs.items():
        shutil.copyfile(png, figdir / f"pareto-{goal}.png")
    perf = next((r for r in rows if r["scenario"] == "performance" and r["solver"] == "cpsat" and "plan" in r), None)
    plan_md = ""
    if perf:
        plan = read_json(perf["plan"])
        tiles = pd.read_parquet(costs / "tiles.parquet")
        level_of = {l: d["level"] for d in plan["domains"] for l in d["layers"]}
        order = [c["name"] for c in sorted(read_json(costs / "codebooks.json")["codebooks"], key=lambda c: -c["delay_ps"])]
        plot_plan_map(tiles, plan["tile_codebook"], order, level_of, figdir / "plan-map-performance.png",
                      title="performance / cpsat: codebook per tile, DVFS level per layer")
        key = "performance-cpsat"
        if key in reports:
            shutil.copyfile(reports[key] / "error_per_layer.png", figdir / "error-per-layer-performance.png")
        plan_md = ("![plan map](figures/plan-map-performance.png)\n\n"
                   "![predicted vs measured error per layer](figures/error-per-layer-performance.png)\n")
    cmeta = read_json(costs / "meta.json")
    books = read_json(costs / "codebooks.json")["codebooks"]
    pmeta = read_json(profile / "profile.json")["meta"]
    base_lines = "\n".join(f"| {k} | " + ", ".join(f"{m} {v:.4f}" for m, v in met.items()) + " |" for k, met in baselines.items())
    stage_lines = "\n".join(f"| {s.name} | {s.seconds:.1f} | {'yes' if s.cached else ''} |" for s in stages)
    cb_lines = "\n".join(f"| {c['name']} | {c.get('family', '')} | {len(c['codes'])} | {c['delay_ps']:.0f} | {c['energy_fj']:.0f} |" for c in books)
    text = f"""# halo-opt demo report

Model `{cmeta.get('model')}` · accelerator `{cmeta.get('accelerator')}` ({cmeta.get('n_macs')} MACs,
tile {cmeta.get('tile')}, workload {cmeta.get('workload')}) · MAC: {pmeta.get('wbits')}-bit
{'signed' if pmeta.get('signed') else 'unsigned'} {pmeta.get('arch')}, {pmeta.get('library')}, {pmeta.get('gates')} gates ·
{cmeta.get('n_tiles')} tiles in {cmeta.get('n_layers')} layers · seed {cfg.seed}.
Produced by `halo-opt demo --out {out}`.

## Plans

Predicted latency/energy per workload pass from the cost tables; speedup and energy saving are
relative to the hardware-agnostic baseline (`baseline_int8`: full INT8 grid at the nominal level);
*share of possible speedup* places each plan between that baseline (0%) and the physical bound
(every tile on the fastest codebook at the fastest level it allows, accuracy ignored: 100%).
Accuracy is measured on held-out text (stdlib docstrings not used for calibration) against the
float model; ρ is the Spearman rank correlation of predicted vs measured per-layer output error;
timing misses counts tiles whose slowest used code misses its level's timing (must be 0).

{summary_table(rows)}

Baselines through the same evaluator:

| run | metrics |
|---|---|
{base_lines}

## Pareto fronts (ε-constraint sweeps, every solver)

![latency vs error](figures/pareto-performance.png)

![energy vs error](figures/pareto-energy.png)

## Plan map and validation of the performance plan

{plan_md}
## The MAC profile and codebooks

![per-code delay and energy](figures/profile.png)

| codebook | family | codes | delay (ps) | energy (fJ/MAC) |
|---|---|---|---|---|
{cb_lines}

## Stages

| stage | seconds | cached |
|---|---|---|
{stage_lines}
"""
    return write_text(out / "report.md", text)
