"""Figure of a MAC profile folder (``halo-opt characterize``): per-code delay and energy, and the
codebook ladder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..hardware.codebooks import Codebook, load_codebooks
from ..hardware.profile import MacProfile
from .style import codebook_label, pyplot, save


def render_profile(folder: str | Path, path: str | Path | None = None) -> Path:
    """Draw ``folder/profile.png`` (or ``path``) from the folder's profile and ``codebooks.json``."""
    folder = Path(folder)
    profile = MacProfile.load(folder)
    m = profile.meta
    if profile.format.is_float:
        title = (f"{m.get('format')} weights x {m.get('activation_format')} activations, {m.get('arch')} significand multiplier "
                 f"(exact product into a {m.get('acc')}-bit fixed-point accumulator), {m.get('library')}, {m.get('gates')} gates")
    else:
        title = (f"{m.get('wbits')}-bit {'signed' if m.get('signed') else 'unsigned'} {m.get('arch')} MAC "
                 f"(y = p + a·w, {m.get('acc')}-bit accumulator), {m.get('library')}, {m.get('gates')} gates")
    return plot_profile(profile, load_codebooks(folder / "codebooks.json"), path or folder / "profile.png", title)


def plot_profile(profile: MacProfile, codebooks: Sequence[Codebook], path: str | Path, title: str = "") -> Path:
    """Three panels: delay per code (static bound and sensitised floating mode), energy per code,
    and the codebook ladder (each codebook's delay = max over its codes, energy = mean).

    Integer codes are drawn at their value. Floating-point codes are drawn at their value on a
    symmetric-log axis (so every octave is as wide), codes with a zero mantissa (±2^e: the
    significand product is a shift) filled in black, and the axis says so."""
    plt = pyplot()
    fmt = profile.format
    codes = profile.values if fmt.is_float else profile.codes
    st, fl, en = profile.delay("static"), profile.delay("float"), profile.energy
    nz = codes != 0
    fig, ax = plt.subplots(1, 3, figsize=(17, 5.2), constrained_layout=True, gridspec_kw={"width_ratios": [1, 1, 1.25]})
    ax[0].plot(codes[nz], st[nz], "o", ms=4.5, mfc="none", mew=0.8, color="C0", label="static bound (case analysis)")
    ax[0].plot(codes[nz], fl[nz], ".", ms=3.5, color="C1", label="sensitised (floating mode)")
    z = np.flatnonzero(~nz)
    xlab = "weight code q"
    if fmt.is_float:
        pow2 = nz & ((profile.codes & ((1 << fmt.mbits) - 1)) == 0)
        ax[0].plot(codes[pow2], st[pow2], "o", ms=4.5, color="k", label="mantissa 0 (±2^e: shift only), static")
        ax[1].plot(codes[pow2], en[pow2], "o", ms=4, mfc="none", color="k", label="mantissa 0 (±2^e)")
        ax[1].legend(loc="best", fontsize=8)
        tiny = float(np.abs(codes[nz]).min())
        for a in ax[:2]:
            a.set_xscale("symlog", linthresh=tiny)
        xlab = f"weight value ({fmt.name} code; symmetric-log axis, linear below 2^{int(np.log2(tiny))})"
    # code 0 is far faster (no partial product): said under the axis, not drawn off-scale
    zname = "code 0" if not fmt.is_float else "±0"
    note0 = f"\n{zname} (not drawn): static {st[z[0]]:.0f} ps, floating {fl[z[0]]:.0f} ps" if z.size else ""
    ax[0].set(xlabel=xlab + note0, ylabel="critical-path delay (ps)", title="Delay per weight code")
    ax[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax[1].plot(codes[nz], en[nz], ".", ms=4, color="tab:green")
    ax[1].set(xlabel=xlab + (f"\n{zname} (not drawn): {en[z[0]]:.0f} fJ" if z.size else ""),
              ylabel=f"energy per MAC at {profile.v0:g} V (fJ)", title="Energy per weight code")
    # ladder: horizontal bars of delay, sorted, coloured by family, energy and size written beside
    books = sorted(codebooks, key=lambda c: (c.delay_ps, c.energy_fj))
    fams = list(dict.fromkeys(c.family for c in books))
    y = np.arange(len(books))
    lo = min(c.delay_ps for c in books)
    ax[2].barh(y, [c.delay_ps - 0.97 * lo for c in books], left=0.97 * lo,
               color=[f"C{fams.index(c.family)}" for c in books], height=0.7)
    for yi, c in zip(y, books):
        ax[2].text(c.delay_ps, yi, f" {c.energy_fj:.0f} fJ, {c.size} codes", va="center", fontsize=7.5)
    ax[2].set_yticks(y, [codebook_label(c.name) for c in books], fontsize=8)
    ax[2].invert_yaxis()
    hi = max(c.delay_ps for c in books)
    ax[2].set_xlim(0.97 * lo, hi + 0.32 * (hi - 0.97 * lo))
    ax[2].set(xlabel="codebook delay = max over its codes (ps)", title="Codebooks: delay (bar), mean energy and size (text)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{i}") for i in range(len(fams))]
    ax[2].legend(handles, fams, title="family", loc="upper right")
    for a in ax:
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save(fig, path, dpi=110)
