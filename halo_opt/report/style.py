"""Shared look of every figure and the number formats of every table (µs, µJ, ×, %)."""

from __future__ import annotations

import math
from pathlib import Path

from ..artifacts import atomic_path

#: marker, size and fill per solver: overlapping fronts stay visible (large hollow under small filled)
SOLVER_STYLE = {"cpsat": ("o", 9, "none"), "lagrange": ("s", 5, None), "milp": ("D", 6, "none"),
                "greedy": ("^", 5, None), "halo": ("x", 6, None), "halo_layer": ("x", 6, None),
                "halo_fold": ("X", 8, None), "relax": ("+", 7, None)}


#: what a relative budget ε divides by, per error model (formulations/formulation.md): (short, in words)
EPS_DEFINITION = {"local": ("ε = Σe / Σ tr(W H Wᵀ)", "ε = Σ tile error / Σ tr(W H Wᵀ) on the calibration Hessians"),
                  "fisher": ("ε = Σe_F / Σ w_r (W H Wᵀ)_rr",
                             "ε = Σ Fisher-weighted tile error / Σ_r w_r (W H Wᵀ)_rr, the predicted degradation over its normaliser")}


def eps_definition(error_model: str | None, short: bool = False) -> str:
    """The definition of a relative budget ε under ``error_model`` (``local`` when unknown)."""
    return EPS_DEFINITION.get(error_model or "local", EPS_DEFINITION["local"])[0 if short else 1]


def pyplot():
    """matplotlib.pyplot on the Agg backend, with font sizes readable at 100 % zoom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11})
    return plt


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically (format from the suffix, PNG by default) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    plt.close(fig)
    return path


def f(v, fmt: str = ".3g", unit: str = "") -> str:
    """``format(v, fmt) + unit``, or an en dash for None/NaN."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, fmt) + unit


def us(seconds) -> str:
    """Seconds as µs, four significant digits."""
    return f(None if seconds is None else seconds * 1e6, ".4g", " µs")


def uj(joules) -> str:
    """Joules as µJ, four significant digits."""
    return f(None if joules is None else joules * 1e6, ".4g", " µJ")


def speedup(x) -> str:
    return f(x, ".3f", "×")


def saving(x) -> str:
    """An energy saving (fraction, positive = less energy) as ``saving 12.3 %`` / ``costs 1.2 % more``."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"saving {max(100 * x, 0.0):.1f} %" if x > -5e-4 else f"{-100 * x:.1f} % more energy"


def versus(latency_s, energy_j, base: dict | None) -> str:
    """``3.21 µs (1.114× vs INT8), 12.3 µJ (saving 10.8 %)``: a result line's cost with its baseline comparison."""
    out = f"latency {us(latency_s)}, energy {uj(energy_j)}"
    if base and base.get("latency_s") and latency_s:
        bl, be = base["latency_s"], base["energy_j"]
        if math.isfinite(bl) and math.isfinite(be) and latency_s > 0 and be > 0:
            out += f" ({bl / latency_s:.3f}× speed, {saving(1 - energy_j / be)} vs the full-grid baseline)"
    return out


def codebook_label(name: str) -> str:
    """Display name of a codebook (unit spelled right: ``e860fj`` -> ``e860fJ``)."""
    return name[:-2] + "fJ" if name.endswith("fj") else name
