"""The demo's report, re-rendered from a demo run folder's artifacts (``demo.json``,
``summary.parquet``, ``costs/``, ``plans/``, ``pareto-*/``, ``execute/*/``, ``profile/``):
``report.md`` opening with what the numbers show, then the plans, fronts, plan maps,
validation, the MAC profile and the stage times."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..artifacts import read_json, read_parquet, write_text
from ..planfile import load_plan
from .style import eps_definition, f, saving, speedup, uj, us

GOALS = ("performance", "energy", "balanced")


def summarise(rows: list[dict], base: dict) -> list[dict]:
    """Each row with ``speedup`` and ``energy_saving`` over ``base`` (:func:`execute.validate.baseline_cost`,
    INT8) and where it sits between the baseline (0) and the physical bounds (1):
    ``share_of_possible_speedup`` (latency bound) and ``share_of_possible_saving`` (energy bound)."""
    bl, be = base["latency_s"], base["energy_j"]
    lat_b = next((r["pred_latency_s"] for r in rows if r["scenario"] == "physical_bound" and "pred_latency_s" in r), None)
    en_b = next((r["pred_energy_j"] for r in rows if r["scenario"] == "physical_bound_energy" and "pred_energy_j" in r), None)
    out = []
    for r in rows:
        r = dict(r)
        if "pred_latency_s" in r and math.isfinite(bl):
            r["speedup"] = bl / r["pred_latency_s"]
            r["energy_saving"] = 1 - r["pred_energy_j"] / be
            if lat_b is not None and bl > lat_b:
                r["share_of_possible_speedup"] = (bl - r["pred_latency_s"]) / (bl - lat_b)
            if en_b is not None and be > en_b:
                r["share_of_possible_saving"] = (be - r["pred_energy_j"]) / (be - en_b)
        out.append(r)
    return out


def _pct(x, fmt=".0f"):
    return f(None if x is None else 100 * x + 0.0 if abs(100 * x) >= 0.5 else 0.0, fmt, " %")


def summary_table(rows: list[dict]) -> str:
    """Markdown table of every plan: prediction (µs, µJ), place between baseline and bound, measured accuracy, validation."""
    metrics = sorted({k[5:] for r in rows for k in r if k.startswith("meas_")})
    head = ["goal", "solver", "status", "gap", "error used ε", "latency", "speed vs INT8", "of possible speedup",
            "energy", "energy vs INT8", "of possible saving", *metrics, "ρ pred/meas", "timing misses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["scenario"], r["solver"], r.get("status", ""), f(r.get("gap"), ".1e"), f(r.get("pred_error_rel"), ".2e"),
                 us(r.get("pred_latency_s")), speedup(r.get("speedup")), _pct(r.get("share_of_possible_speedup")),
                 uj(r.get("pred_energy_j")), saving(r.get("energy_saving")), _pct(r.get("share_of_possible_saving")),
                 *[f(r.get(f"meas_{m}"), ".4f") for m in metrics], f(r.get("spearman"), ".2f"), f(r.get("timing_misses"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _workload(w) -> str:
    if not isinstance(w, dict):
        return str(w)
    return f"{w.get('phase')}, batch {w.get('batch')} × {w.get('seq_len')} tokens"


def _row(rows, scenario, solver=None):
    return next((r for r in rows if r["scenario"] == scenario and (solver is None or r["solver"] == solver) and "pred_latency_s" in r), None)


def _best(rows, goal, key):
    cand = [r for r in rows if r["scenario"] == goal and key in r]
    return max(cand, key=lambda r: r[key]) if cand else None


def findings(rows: list[dict], base: dict, budgets: dict, bound_share: dict, baselines: dict, metric: str | None,
             slow_why: str = "", error_model: str | None = None) -> list[str]:
    """The report's opening bullets, each computed from the rows (no fixed wording of results)."""
    out = []
    lat_b, en_b = _row(rows, "physical_bound"), _row(rows, "physical_bound_energy")
    acc = (lambda r: f", measured {metric.replace('_', ' ')} {r[f'meas_{metric}']:.4f}" if metric and r and f"meas_{metric}" in r else "")
    ref = f" (INT8: {baselines.get('int8-rtn', {}).get(metric, math.nan):.4f}, float 1.0)" if metric and "int8-rtn" in baselines else ""
    bud = ", ".join(f"{g} ε = {f(b, '.2g')}" for g, b in budgets.items())
    out.append(f"**Budget.** Each HALO goal is planned under its scenario's relative output-error budget ({bud}; "
               f"{error_model or 'local'} error model: {eps_definition(error_model)}). The column *error used ε* is what each plan spends.")
    p = _row(rows, "performance", "cpsat") or _best(rows, "performance", "speedup")
    if p:
        bound = f"; the physical bound (accuracy ignored) is {speedup(lat_b['speedup'])}" if lat_b and "speedup" in lat_b else ""
        out.append(f"**Performance goal** ({p['solver']}): {speedup(p.get('speedup'))} the INT8 baseline's speed "
                   f"({us(p['pred_latency_s'])} vs {us(base['latency_s'])} per pass), {_pct(p.get('share_of_possible_speedup'))} "
                   f"of the possible speedup{bound}; energy {saving(p.get('energy_saving'))}{acc(p)}{ref}.")
    e = _row(rows, "energy", "cpsat") or _best(rows, "energy", "energy_saving")
    if e:
        bound = f"; the physical bound saves {100 * en_b['energy_saving']:.1f} %" if en_b and "energy_saving" in en_b else ""
        out.append(f"**Energy goal** ({e['solver']}): {saving(e.get('energy_saving'))} of the baseline's energy "
                   f"({uj(e['pred_energy_j'])} vs {uj(base['energy_j'])} per pass), {_pct(e.get('share_of_possible_saving'))} "
                   f"of the possible saving{bound}; speed {speedup(e.get('speedup'))}{acc(e)}.")
    b = _row(rows, "balanced", "cpsat") or _best(rows, "balanced", "energy_saving")
    if b and "speedup" in b:
        lr, er = 1 / b["speedup"], 1 - b["energy_saving"]
        text = (f"**Balanced goal** ({b['solver']}): speed {speedup(b['speedup'])}, energy {saving(b['energy_saving'])}{acc(b)}. "
                f"It minimises latency/baseline + energy/baseline = {lr:.3f} + {er:.3f} = {lr + er:.3f} (baseline: 2).")
        if b["speedup"] < 1:
            text += (f" It runs {100 * (lr - 1):.1f} % slower than the baseline by design: the objective accepts any latency "
                     f"the energy saving outweighs{(': ' + slow_why) if slow_why else ''}. "
                     "Use the performance goal when latency must not grow.")
        out.append(text)
    i4 = _row(rows, "baseline_int4")
    if i4 and "speedup" in i4:
        out.append(f"**Uniform INT4** (every tile on the 16-code grid at the nominal level): speed {speedup(i4['speedup'])}, "
                   f"energy {saving(i4['energy_saving'])}, measured {metric.replace('_', ' ') if metric else 'accuracy'} "
                   f"{f(baselines.get('int4-rtn', {}).get(metric), '.4f')}, at error ε {f(i4.get('pred_error_rel'), '.2g')}: "
                   "its 16 codes are not chosen for delay or energy, so it buys little of either.")
    gaps = []
    for goal in GOALS:
        rs = [r for r in rows if r["scenario"] == goal and "pred_latency_s" in r and "speedup" in r]
        if len(rs) > 1:
            key = "speedup" if goal == "performance" else "energy_saving"
            best = max(rs, key=lambda r: r[key])
            worst = min(rs, key=lambda r: r[key])
            val = (lambda r: speedup(r[key])) if key == "speedup" else (lambda r: f"{100 * r[key]:.1f} %")
            gaps.append(f"{goal}: best {best['solver']} {val(best)}, weakest {worst['solver']} {val(worst)}")
    if gaps:
        out.append("**Solvers** (same budget, same cost tables): " + "; ".join(gaps) + ".")
    if bound_share:
        out.append(f"**Where the time goes** (baseline, nominal level): {100 * bound_share['compute']:.0f} % of the latency is in "
                   f"compute-bound layers, which faster codebooks and levels speed up, and {100 * bound_share['memory']:.0f} % in "
                   "memory-bound layers, which they cannot (weights and activations stream at the memory roofline).")
    rho = [r["spearman"] for r in rows if r.get("spearman") is not None and math.isfinite(r["spearman"])]
    miss = sum(int(r.get("timing_misses") or 0) for r in rows)
    if rho:
        out.append(f"**Validation**: the predicted per-layer error ranks the measured one with Spearman ρ "
                   f"{min(rho):.2f}–{max(rho):.2f} over the executed plans; {miss} tiles miss their level's timing.")
    return out


def _why_slower(plan: dict, costs, latency_s: float) -> str:
    """Why a plan is slower than the baseline: layers below the nominal clock, or DVFS switch time
    (the plan's latency minus its layers' latencies at their levels)."""
    from ..execute.validate import nominal_level

    f_nom = float(costs.levels[nominal_level(costs)]["freq_hz"])
    level_of = {l: d["level"] for d in plan["domains"] for l in d["layers"]}
    slow = [l for l, v in level_of.items() if float(costs.levels[v]["freq_hz"]) < f_nom]
    lat = costs.latency.set_index(["layer", "level"])["seconds"]
    layers_s = float(sum(lat[(l, v)] for l, v in level_of.items()))
    seq = [d["level"] for d in plan["domains"]]
    switches = sum(a != b for a, b in zip(seq, seq[1:]))
    parts = []
    if slow:
        parts.append(f"{len(slow)} of {len(level_of)} layers run below the nominal clock at lower-voltage levels")
    if latency_s - layers_s > 1e-12:
        parts.append(f"{switches} DVFS level switches between consecutive layers add {us(latency_s - layers_s)}")
    return "; ".join(parts)


def _compute_share(costs) -> dict:
    """Share of the baseline latency (nominal level) in compute- and memory-bound layers."""
    from ..execute.validate import nominal_level

    lat = costs.latency[costs.latency["level"] == nominal_level(costs)]
    if "compute_bound" not in lat or lat["seconds"].sum() <= 0:
        return {}
    tot = float(lat["seconds"].sum())
    comp = float(lat.loc[lat["compute_bound"].astype(bool), "seconds"].sum()) / tot
    return {"compute": comp, "memory": 1 - comp}


def render_demo(run: str | Path) -> list[Path]:
    """Re-render every page and figure of a demo run folder; returns the files written."""
    from ..execute.inputs import load_costs
    from ..execute.validate import baseline_cost, nominal_level
    from .execution import render_execution
    from .pareto_plot import render_pareto
    from .plan_map import plot_plan_map
    from .profile_plot import render_profile

    run = Path(run)
    demo = read_json(run / "demo.json", "demo record")
    costs = load_costs(run / "costs")
    base = baseline_cost(costs, "int8")
    rows = summarise(read_parquet(run / "summary.parquet", "demo summary").to_dict("records"), base)
    rows = [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v) and k not in ("gap",))} for r in rows]
    written = []
    figdir = run / "figures"
    figdir.mkdir(exist_ok=True)
    if (run / "profile" / "profile.json").is_file():
        written.append(render_profile(run / "profile", figdir / "profile.png"))
    fronts = [g for g in GOALS if (run / f"pareto-{g}" / "points.parquet").is_file()]
    written += [render_pareto(run / f"pareto-{g}") for g in fronts]
    for folder in sorted((run / "execute").glob("*/report.json")):
        written += render_execution(folder.parent)
    def plan_file(r: dict | None) -> Path | None:
        """A row's plan file: as recorded, else under this run's ``plans/`` (the run folder was moved
        or the report is rendered from another working directory)."""
        if not (r and r.get("plan")):
            return None
        p = Path(r["plan"])
        return p if p.is_file() else next((q for q in [run / "plans" / p.name] if q.is_file()), None)

    maps = []
    for goal in GOALS:
        r = _row(rows, goal, "cpsat")
        if plan_file(r):
            plan = load_plan(plan_file(r)).to_dict()
            level_of = {l: d["level"] for d in plan["domains"] for l in d["layers"]}
            written.append(plot_plan_map(costs.tiles, plan["tile_codebook"], list(costs.codebooks.values()), costs.levels, level_of,
                                         figdir / f"plan-map-{goal}.png", nominal=nominal_level(costs),
                                         title=f"Plan map, goal “{goal}” (cpsat): codebook per tile, DVFS level per layer; "
                                               f"speed {speedup(r.get('speedup'))}, energy {saving(r.get('energy_saving'))} vs INT8"))
            maps.append(goal)
    cfg = demo.get("config", {})
    budgets = {g: load_plan(p).scenario.get("budget") for g in GOALS
               for p in [next((plan_file(r) for r in rows if r["scenario"] == g and plan_file(r)), None)] if p}
    metric = next((m for m in ("cosine_mean", "ppl") if any(f"meas_{m}" in r for r in rows)), None)
    bal = _row(rows, "balanced", "cpsat")
    why = _why_slower(load_plan(plan_file(bal)).to_dict(), costs, bal["pred_latency_s"]) if plan_file(bal) else ""
    lines = findings(rows, base, budgets, _compute_share(costs), demo.get("baselines", {}), metric, why, costs.meta.get("error_model"))
    cmeta = costs.meta
    pmeta = read_json(run / "profile" / "profile.json")["meta"] if (run / "profile" / "profile.json").is_file() else {}
    base_lines = "\n".join(f"| {k} | " + ", ".join(f"{m} {v:.4f}" for m, v in met.items()) + " |"
                           for k, met in demo.get("baselines", {}).items())
    stage_lines = "\n".join(f"| {s['name']} | {s['seconds']:.1f} | "
                            + (f"cached (this rerun: {s['rerun_seconds']:.1f} s)" if s.get("cached") else "computed") + " |"
                            for s in demo.get("stages", []))
    cb_lines = "\n".join(f"| {n} | {c.get('family', '')} | {len(c['codes'])} | {c['delay_ps']:.0f} | {c['energy_fj']:.0f} |"
                         for n, c in costs.codebooks.items())
    val_lines = "\n".join(f"- [{p.name}](execute/{p.name}/report.md)" for p in sorted((run / "execute").glob("*")) if (p / "report.md").is_file())
    text = f"""# halo-opt demo report

Model `{cmeta.get('model')}` · accelerator `{cmeta.get('accelerator')}` ({cmeta.get('n_macs')} MACs,
tile {cmeta.get('tile')}, workload {_workload(cmeta.get('workload'))}) · MAC: {pmeta.get('wbits')}-bit
{'signed' if pmeta.get('signed') else 'unsigned'} {pmeta.get('arch')}, {pmeta.get('library')}, {pmeta.get('gates')} gates ·
{cmeta.get('n_tiles')} tiles in {cmeta.get('n_layers')} layers · seed {cfg.get('seed')}.
Produced by `halo-opt demo --out {cfg.get('out', run)}`; re-render with `halo-opt report {run}`.

## What this shows

All latencies and energies are predicted per workload pass by the cost tables; the reference is the
hardware-agnostic INT8 baseline (every tile on the full 8-bit grid at the nominal DVFS level:
{us(base['latency_s'])}, {uj(base['energy_j'])}); accuracy is measured on held-out text against the float model.

{chr(10).join('- ' + x for x in lines)}

## Plans

*of possible speedup* / *of possible saving* place a plan between the INT8 baseline (0 %) and the
physical bound (100 %): every tile on the fastest (least-energy) codebook at the fastest (least-energy)
level it allows, accuracy ignored (rows `physical_bound`, `physical_bound_energy`). ρ is the Spearman
rank correlation of predicted vs measured per-layer output error; *timing misses* counts tiles whose
slowest used code misses its level's timing (must be 0). Baselines are priced by one function
(`execute.validate.baseline_cost`), as in `halo-opt execute`'s report.

{summary_table(rows)}

Accuracy of the baselines through the same evaluator:

| run | metrics |
|---|---|
{base_lines}

## Pareto fronts (ε-constraint sweeps, every solver)

{chr(10).join(f'![Pareto front, goal {g}](pareto-{g}/pareto.png)' + chr(10) for g in fronts)}
## Plan maps

{chr(10).join(f'![plan map, goal {g}](figures/plan-map-{g}.png)' + chr(10) for g in maps)}
## Validation of every executed plan

{val_lines}

## The MAC profile and codebooks

![per-code delay and energy](figures/profile.png)

| codebook | family | codes | delay (ps) | energy (fJ/MAC) |
|---|---|---|---|---|
{cb_lines}

## Stages

Seconds of the run that computed each stage (a cached rerun keeps them and says so).

| stage | seconds | |
|---|---|---|
{stage_lines}
"""
    written.append(write_text(run / "report.md", text))
    return written
