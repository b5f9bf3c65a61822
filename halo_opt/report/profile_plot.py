"""Plot of a MAC profile: per-code delay and energy, and the codebook ladder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifacts import atomic_path
from ..hardware.codebooks import Codebook
from ..hardware.profile import MacProfile


def plot_profile(profile: MacProfile, codebooks: Sequence[Codebook], path: str | Path, title: str = "") -> Path:
    """Three panels: delay per code (static and floating), energy per code, codebook ladder
    (each codebook's max delay vs mean energy, sized by its number of codes). PNG or SVG by suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = profile.codes
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
    ax[0].plot(codes, profile.delay("static"), ".", ms=4, label="static (case analysis)")
    ax[0].plot(codes, profile.delay("float"), ".", ms=4, alpha=0.7, label="sensitised (floating mode)")
    ax[0].set(xlabel="weight code q", ylabel="critical-path delay (ps)", title="Delay per weight code")
    ax[0].legend(loc="lower right")
    ax[1].plot(codes, profile.energy, ".", ms=4, color="tab:green")
    ax[1].set(xlabel="weight code q", ylabel=f"energy per MAC at {profile.v0:g} V (fJ)", title="Energy per weight code")
    fam_colors = {}
    for cb in codebooks:
        c = fam_colors.setdefault(cb.family, f"C{len(fam_colors)}")
        ax[2].scatter(cb.delay_ps, cb.energy_fj, s=12 + 3 * np.sqrt(cb.size) * 6, color=c, alpha=0.75,
                      label=cb.family if cb.family not in ax[2].get_legend_handles_labels()[1] else None)
        ax[2].annotate(f"{cb.name} ({cb.size})", (cb.delay_ps, cb.energy_fj), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax[2].set(xlabel="codebook delay = max over codes (ps)", ylabel="codebook energy = mean over codes (fJ)",
              title="Codebook ladder (marker size ~ number of codes)")
    ax[2].legend(fontsize=8, loc="upper left")
    for a in ax:
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
