"""Page and figures of one executed plan, from its ``report.json`` (:mod:`halo_opt.execute.report`):
``report.md``, ``error_per_layer.png`` and ``accuracy_vs_cost.png``."""

from __future__ import annotations

import math
from pathlib import Path

from ..artifacts import write_text
from .style import f, pyplot, save, uj, us


def render_execution(folder: str | Path) -> list[Path]:
    """Re-render the page and both figures of the execution report in ``folder``."""
    from ..execute.report import load_report

    folder = Path(folder)
    rep = load_report(folder)
    return [plot_errors(folder / "error_per_layer.png", rep["layers"], rep.get("method", "")),
            plot_accuracy(folder / "accuracy_vs_cost.png", rep["methods"], rep["metric_names"]),
            write_text(folder / "report.md", markdown(rep))]


def _base(rep: dict) -> dict | None:
    return next((m for k, m in rep["methods"].items() if k.startswith("int8-") and math.isfinite(m.get("latency_s", math.nan))), None)


def markdown(rep: dict) -> str:
    v, t = rep["validation"], rep["timing"]
    base = _base(rep)
    names = rep["metric_names"]
    lines = [f"# Execution report: {rep['model']}, method {rep['method']}", "",
             f"Plan: `{rep.get('plan', '-')}` · costs: `{rep.get('costs', '-')}` · held-out: {rep['heldout']['n_sequences']} sequences, "
             f"{rep['heldout']['n_tokens']} tokens · quantize wall {rep['wall_s']:.2f} s", "",
             "## Accuracy (held-out) and predicted cost per workload pass", "",
             "Baselines are priced by one function (`execute.validate.baseline_cost`): every tile on the uniform grid "
             "(INT8: `full`, INT4: the 16-code `int4` codebook) at the nominal DVFS level; `float` is not run on the "
             "integer MAC and has no cost. Speed and saving are relative to the INT8 baseline.", "",
             "| run | " + " | ".join(names) + " | latency | energy | speed vs INT8 | energy vs INT8 |",
             "|---" * (len(names) + 5) + "|"]
    for name, m in rep["methods"].items():
        lat, en = m.get("latency_s", math.nan), m.get("energy_j", math.nan)
        sp = base["latency_s"] / lat if base and lat and math.isfinite(lat) else None
        sv = 1 - en / base["energy_j"] if base and math.isfinite(en) else None
        lines.append(f"| {name} | " + " | ".join(f(m["metrics"].get(k), ".4f") for k in names)
                     + f" | {us(lat)} | {uj(en)} | {f(sp, '.3f', '×')} | "
                     + (f"saving {100 * sv:.1f} %" if sv is not None and sv >= 0 else f(None if sv is None else -100 * sv, ".1f", " % more")) + " |")
    lines += ["", "## Predicted vs measured layer error", "",
              f"Spearman ρ (predicted vs measured on held-out) = {f(v['spearman'], '.3f')}; "
              f"Σ predicted / Σ measured = {f(v['ratio_total'], '.3f')}.",
              "Predicted: Σ tile e_gc (cost table, block-diagonal, calibration H, damped). "
              "calib_blockdiag: the executor's codes on the same block-diagonal damped measure (= predicted for RTN). "
              "Measured: (2/n) Σ_t ‖(Ŵ−W)x_t‖² on held-out tokens (full).", ""]
    e2e = v.get("end_to_end")
    if e2e:
        lines += [f"End to end ({e2e['error_model']} error model): predicted {f(e2e['predicted'], '.4g')}"
                  + (" (relative Σe/N; no common unit with the measured degradation)" if e2e["error_model"] == "local" else f" ({e2e.get('units')})")
                  + f", measured {e2e['measured_what']} {f(e2e['measured'], '.4g')}, measured/predicted {f(e2e['ratio'], '.3g')}.", ""]
    lines += ["![predicted vs measured error per layer](error_per_layer.png)", "",
              "![accuracy vs cost](accuracy_vs_cost.png)", "",
              "| layer | predicted | calib_blockdiag | measured (held-out) |", "|---|---|---|---|"]
    for r in rep["layers"]:
        lines.append(f"| {r['layer']} | {f(r['predicted'], '.4g')} | {f(r['calib_blockdiag'], '.4g')} | {f(r['measured'], '.4g')} |")
    c = rep["cost"]
    lines += ["", "## Timing of the codes used", "",
              f"Tiles: {t['tiles']}; outside their codebook: {t['outside_codebook']}; missing their level's timing: {t['miss_timing']}. "
              f"Realised delay ≤ planned on all tiles: {t['realized_le_planned']}. Per-code delays from {t.get('delay_source', '–')}.", "",
              f"Planned (cost model, level switches excluded): latency {us(c['planned']['latency_s'])}, energy {uj(c['planned']['energy_j'])}. "
              f"Realised from the code histogram: latency {us(c['realized']['latency_s'])}, energy {uj(c['realized']['energy_j'])}.", ""]
    return "\n".join(lines) + "\n"


def plot_errors(path: Path, layers: list[dict], method: str = "") -> Path:
    """Per layer: predicted (calibration, block-diagonal) vs measured (held-out) output error, log-log."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    p = [max(r["predicted"], 1e-30) for r in layers]
    m = [max(r["measured"], 1e-30) for r in layers]
    ax.loglog(p, m, "o", ms=4, alpha=0.8, label=f"one layer ({len(layers)})")
    lo, hi = min(p + m), max(p + m)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = predicted")
    ax.set_xlabel("predicted Σ e_gc (calibration H, block-diagonal)")
    ax.set_ylabel("measured (2/n) Σ‖ΔW x‖² (held-out)")
    ax.set_title(f"Layer output error, predicted vs measured{' (' + method + ')' if method else ''}")
    from matplotlib.ticker import NullFormatter

    for axis in (ax.xaxis, ax.yaxis):  # decade labels only: minor labels run into each other
        axis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    return save(fig, path)


def plot_accuracy(path: Path, methods: dict, metric_names: list[str]) -> Path:
    """Accuracy of the plan and of the uniform baselines vs their predicted latency (µs) and energy (µJ)."""
    plt = pyplot()
    key = metric_names[0] if metric_names else None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, (cost, scale, unit) in zip(axes, (("latency_s", 1e6, "predicted latency per pass (µs)"),
                                             ("energy_j", 1e6, "predicted energy per pass (µJ)"))):
        for i, (name, m) in enumerate(methods.items()):
            x, y = m.get(cost), m["metrics"].get(key)
            if x is not None and y is not None and math.isfinite(x):
                ax.plot([x * scale], [y], "os^Dvx"[i % 6], ms=8, color=f"C{i}", label=name, alpha=0.85)
        ax.set_xlabel(unit)
        ax.set_ylabel(f"{key} (held-out)" if key else "")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    h, lab = axes[0].get_legend_handles_labels()
    if h:
        axes[1].legend(h, lab, loc="best")
    fig.suptitle("Accuracy vs predicted cost per pass" + (" (float is not run on the integer MAC: no cost)" if "float" in methods else "")
                 + ("" if len(methods) > 1 else " — this run measured the plan only, no baselines"))
    return save(fig, path)
