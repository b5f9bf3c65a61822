"""Validation report of an executed plan: ``report.json``, ``report.md``, ``error_per_layer.png``,
``accuracy_vs_cost.png`` — written into a folder by the caller (atomically)."""

from __future__ import annotations

import math
from pathlib import Path

from ..artifacts import write_json, write_text


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def write_report(folder: str | Path, rep: dict) -> None:
    """Write JSON + Markdown + plots of ``rep`` (the dict built by :func:`pipeline.validate_execution`)."""
    folder = Path(folder)
    write_json(folder / "report.json", rep)
    plot_errors(folder / "error_per_layer.png", rep["layers"])
    plot_accuracy(folder / "accuracy_vs_cost.png", rep["methods"])
    write_text(folder / "report.md", markdown(rep))


def markdown(rep: dict) -> str:
    v = rep["validation"]
    lines = [f"# Execution report: {rep['model']} — method {rep['method']}", "",
             f"Plan: `{rep.get('plan', '-')}` · costs: `{rep.get('costs', '-')}` · held-out: {rep['heldout']['n_sequences']} sequences, "
             f"{rep['heldout']['n_tokens']} tokens · quantize wall {rep['wall_s']:.2f} s", "",
             "## Accuracy (held-out) and cost", "", "| run | " + " | ".join(rep["metric_names"]) + " | latency s | energy J |",
             "|---" * (len(rep["metric_names"]) + 3) + "|"]
    for name, m in rep["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m["metrics"].get(k, float("nan"))) for k in rep["metric_names"])
                     + f" | {_fmt(m.get('latency_s', float('nan')))} | {_fmt(m.get('energy_j', float('nan')))} |")
    lines += ["", "## Predicted vs measured layer error", "",
              f"Spearman ρ (predicted vs measured on held-out) = {_fmt(v['spearman'])}; "
              f"Σ predicted / Σ measured = {_fmt(v['ratio_total'])}.",
              "Predicted: Σ tile e_gc (cost table, block-diagonal, calibration H, damped). "
              "calib_blockdiag: the executor's codes on the same block-diagonal damped measure (= predicted for RTN). "
              "Measured: (2/n) Σ_t ‖(Ŵ−W)x_t‖² on held-out tokens (full).", ""]
    e2e = v.get("end_to_end")
    if e2e:
        lines += [f"End to end ({e2e['error_model']} error model): predicted {_fmt(e2e['predicted'])}"
                  + (" (relative Σe/N; no common unit with the measured degradation)" if e2e["error_model"] == "local" else f" ({e2e.get('units')})")
                  + f", measured {e2e['measured_what']} {_fmt(e2e['measured'])}, measured/predicted {_fmt(e2e['ratio'])}.", ""]
    lines += [
              "| layer | predicted | calib_blockdiag | measured (held-out) |", "|---|---|---|---|"]
    for r in rep["layers"]:
        lines.append(f"| {r['layer']} | {_fmt(r['predicted'])} | {_fmt(r['calib_blockdiag'])} | {_fmt(r['measured'])} |")
    t = rep["timing"]
    lines += ["", "## Timing of the codes used", "",
              f"Tiles: {t['tiles']}; outside their codebook: {t['outside_codebook']}; missing their level's timing: {t['miss_timing']}. "
              f"Realised delay ≤ planned on all tiles: {t['realized_le_planned']}.", "",
              f"Planned (cost model, switches excluded): latency {_fmt(rep['cost']['planned']['latency_s'])} s, "
              f"energy {_fmt(rep['cost']['planned']['energy_j'])} J. Realised from the code histogram: latency "
              f"{_fmt(rep['cost']['realized']['latency_s'])} s, energy {_fmt(rep['cost']['realized']['energy_j'])} J.", ""]
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    from ..artifacts import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_errors(path: Path, layers: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    p = [max(r["predicted"], 1e-30) for r in layers]
    m = [max(r["measured"], 1e-30) for r in layers]
    ax.loglog(p, m, "o", ms=4)
    lo, hi = min(p + m), max(p + m)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = predicted")
    ax.set_xlabel("predicted Σ e_gc (calibration, block-diag)")
    ax.set_ylabel("measured (2/n)Σ‖ΔW x‖² (held-out)")
    ax.set_title("Layer error: predicted vs measured")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_accuracy(path: Path, methods: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = next(iter(next(iter(methods.values()))["metrics"]), None)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, cost in zip(axes, ("latency_s", "energy_j")):
        for name, m in methods.items():
            x, y = m.get(cost), m["metrics"].get(key)
            if x is not None and y is not None and math.isfinite(x):
                ax.plot([x], [y], "o")
                ax.annotate(name, (x, y), fontsize=8)
        ax.set_xlabel(cost.replace("_", " "))
        ax.set_ylabel(key or "")
    fig.suptitle("Accuracy vs cost (held-out)")
    _save(fig, path)
    plt.close(fig)
