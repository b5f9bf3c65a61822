"""Figure of a Pareto folder (``halo-opt pareto``, the demo's sweeps): objective vs error budget
per solver, in the tables' units (µs, µJ), with the goal in the title."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..artifacts import read_json, read_parquet
from .style import SOLVER_STYLE, eps_definition, pyplot, save

#: objective -> (column, scale, axis label)
Y = {"latency": ("latency_s", 1e6, "predicted latency per pass (µs)"),
     "energy": ("energy_j", 1e6, "predicted energy per pass (µJ)"),
     "weighted": ("objective", 1.0, "latency/baseline + energy/baseline")}


def _error_model_of(costs: str | None, folder: Path) -> str | None:
    """The error model of the sweep's cost folder: the recorded path, else a ``costs/`` beside the
    sweep (a moved run folder, or a report rendered from another working directory)."""
    if not costs:
        return None
    for c in (Path(costs), folder.parent / Path(costs).name):
        if (c / "meta.json").is_file():
            return read_json(c / "meta.json").get("error_model")
    return None


def render_pareto(folder: str | Path) -> Path:
    """Draw ``folder/pareto.png`` from ``points.parquet`` and ``pareto.json``."""
    folder = Path(folder)
    df = read_parquet(folder / "points.parquet", "Pareto points")
    meta = read_json(folder / "pareto.json", "Pareto metadata") if (folder / "pareto.json").is_file() else {}
    param = meta.get("param", "budget")
    objective = meta.get("objective", "latency")
    ycol, scale, ylabel = Y.get(objective, Y["weighted"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    xcol = "error_rel" if param == "budget" else "energy_j"
    xs = 1.0 if param == "budget" else 1e6
    for i, (s, g) in enumerate(df.groupby("solver", sort=False)):
        ok = g[np.isfinite(g["objective"])].sort_values(xcol)
        mk, ms, mfc = SOLVER_STYLE.get(s, ("o", 5, None))
        miss = len(g) - len(ok)  # e.g. a time limit hit before any plan: said in the legend, not hidden
        label = s + (f" (no plan at {miss}/{len(g)} points: {', '.join(sorted(set(g['status']) - {'optimal', 'feasible'}))})" if miss else "")
        ax.plot(ok[xcol] * xs, ok[ycol] * scale, "-", marker=mk, ms=ms, mfc=mfc, color=f"C{i}", lw=1, alpha=0.85, label=label)
    nd = df[~df["dominated"] & np.isfinite(df["objective"])]
    ax.plot(nd[xcol] * xs, nd[ycol] * scale, "k.", ms=3, label="non-dominated")
    base = meta.get("baseline") or {}
    bval = {"latency": base.get("latency_s"), "energy": base.get("energy_j")}.get(objective, 2.0 if base else None)
    if bval is not None and math.isfinite(bval):
        ax.axhline(bval * (scale if objective in Y and objective != "weighted" else 1.0), color="0.4", ls="--", lw=1,
                   label="INT8 baseline (full grid, nominal level)")
    ax.set_xscale("log")
    model = meta.get("error_model") or _error_model_of(meta.get("costs"), folder)
    eps = f"({model} model), {eps_definition(model, short=True)}" if model else "ε = Σe / normaliser (error model not found)"
    ax.set_xlabel(f"relative output error of the plan {eps}" if param == "budget" else "energy cap per pass (µJ)")
    ax.set_ylabel(ylabel)
    goal = meta.get("scenario", objective)
    ax.set_title(f"Pareto front, goal “{goal}” (minimise {objective}): ε-constraint sweep, every solver")
    ax.legend(title="solver", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)   # outside: no curve under it
    ax.grid(alpha=0.3, which="both")
    return save(fig, folder / "pareto.png")
