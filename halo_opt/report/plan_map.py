"""The plan map: one figure, one row per layer, one cell per tile coloured by its codebook, the
layer's DVFS level written at the right and explained in the legend."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .style import codebook_label, pyplot, save


def plot_plan_map(tiles: pd.DataFrame, tile_codebook: Sequence[str], codebooks: Sequence[dict], levels: dict[str, dict],
                  layer_level: dict[str, str], path: str | Path, title: str = "", nominal: str | None = None) -> Path:
    """``tiles``: ``tiles.parquet`` of the cost folder (layer, row0, col0, in plan order);
    ``tile_codebook``: the plan's codebook per tile; ``codebooks``: ``codebooks.json`` entries
    (name, codes, delay_ps, energy_fj; colours run from the slowest to the fastest used);
    ``levels``: level name -> voltage_v, freq_hz; ``layer_level``: the level of each layer's domain."""
    plt = pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    df = tiles.copy()
    df["codebook"] = list(tile_codebook)
    by_name = {c["name"]: c for c in codebooks}
    used = sorted(set(df["codebook"]), key=lambda n: (-by_name.get(n, {}).get("delay_ps", 0.0), n))
    cidx = {c: i for i, c in enumerate(used)}
    layers = list(dict.fromkeys(df["layer"]))
    strips = []
    for layer in layers:
        t = df[df["layer"] == layer].sort_values(["row0", "col0"])
        strips.append([cidx[c] for c in t["codebook"]])
    width = max(len(s) for s in strips)
    grid = np.full((len(layers), width), np.nan)
    for i, s in enumerate(strips):
        grid[i, : len(s)] = s
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.92, max(len(used), 2)))[: len(used)]
    fig_h = 2.2 + 0.2 * len(layers) + 0.18 * ((len(used) + len(set(layer_level.values())) + 1) // 2)
    fig, ax = plt.subplots(figsize=(13, fig_h), constrained_layout=True)
    ax.imshow(grid, cmap=ListedColormap(colors), norm=BoundaryNorm(np.arange(len(used) + 1) - 0.5, len(used)),
              aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    ax.set_xlabel("tile of the layer (output-row tile by output-row tile, input-column tiles within each)")
    ax.set_xlim(-0.5, width - 0.5)
    nom_f = float(levels[nominal]["freq_hz"]) if nominal in levels else None
    lv_used = list(dict.fromkeys(layer_level.get(l, "?") for l in layers))
    import matplotlib.transforms as mtransforms

    right = mtransforms.blended_transform_factory(ax.transAxes, ax.transData)  # x: just right of the axes; y: the layer's row
    for i, layer in enumerate(layers):
        ax.text(1.01, i, layer_level.get(layer, "?"), va="center", fontsize=7, transform=right)
    ax.text(1.01, -0.7, "DVFS level", fontsize=8, weight="bold", va="bottom", transform=right)
    ax.set_xticks(np.arange(-0.5, width, 1.0), minor=True)  # thin white lines between tiles and layers
    ax.set_yticks(np.arange(-0.5, len(layers), 1.0), minor=True)
    ax.grid(which="minor", color="white", lw=0.4 if width <= 200 else 0.0)
    ax.tick_params(which="minor", length=0)

    def lv_text(n):
        L = levels.get(n)
        if L is None:
            return n
        rel = f", {float(L['freq_hz']) / nom_f:.2f}× nominal clock" if nom_f else ""
        return f"{n}: {float(L['voltage_v']):.2f} V, {float(L['freq_hz']) / 1e6:.0f} MHz{rel}"

    handles = [Patch(color=colors[cidx[c]], label=f"{codebook_label(c)}: {len(by_name.get(c, {}).get('codes', []))} codes, "
                     f"{by_name.get(c, {}).get('delay_ps', float('nan')):.0f} ps, {by_name.get(c, {}).get('energy_fj', float('nan')):.0f} fJ")
               for c in used]
    handles += [Patch(color="none", label="levels: " + lv_text(n)) for n in lv_used]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False,
               title="codebook of a tile (codes, delay = max over them, energy = mean per MAC); DVFS levels")
    ax.set_title(title or "Plan map: codebook per tile, DVFS level per layer")
    return save(fig, path, dpi=100)
