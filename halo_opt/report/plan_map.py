"""Per-layer plan map: codebook per tile as a heatmap, DVFS level per domain in the title."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..artifacts import atomic_path


def plot_plan_map(tiles: pd.DataFrame, tile_codebook: Sequence[str], codebook_order: Sequence[str],
                  layer_level: dict[str, str], path: str | Path, title: str = "") -> Path:
    """One small heatmap per layer (rows = output-row tiles, cols = input-column tiles), colour = codebook.

    ``tiles`` is ``tiles.parquet`` of the cost folder (layer, row0, row1, col0, col1, in plan order);
    ``tile_codebook`` the plan's codebook per tile; ``codebook_order`` sets the colour order
    (slowest/full first); ``layer_level`` the DVFS level of each layer's domain.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    df = tiles.copy()
    df["codebook"] = list(tile_codebook)
    used = [c for c in codebook_order if c in set(df["codebook"])]
    cidx = {c: i for i, c in enumerate(used)}
    layers = list(dict.fromkeys(df["layer"]))
    ncols = min(6, len(layers))
    nrows = int(np.ceil(len(layers) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols + 1.5, 2.3 * nrows + 0.8), squeeze=False,
                             constrained_layout=True)
    cmap = ListedColormap(plt.get_cmap("viridis", max(len(used), 2))(np.arange(max(len(used), 2)))[: len(used)])
    norm = BoundaryNorm(np.arange(len(used) + 1) - 0.5, len(used))
    im = None
    for ax, layer in zip(axes.flat, layers):
        t = df[df["layer"] == layer]
        r_edges = np.unique(np.r_[t["row0"], t["row1"]])
        c_edges = np.unique(np.r_[t["col0"], t["col1"]])
        grid = np.full((len(r_edges) - 1, len(c_edges) - 1), np.nan)
        for _, row in t.iterrows():
            grid[np.searchsorted(r_edges, row.row0), np.searchsorted(c_edges, row.col0)] = cidx[row.codebook]
        im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        short = layer if len(layer) <= 28 else "…" + layer[-27:]
        ax.set_title(f"{short}\nlevel {layer_level.get(layer, '?')}", fontsize=7)
        if ax in axes[-1]:
            ax.set_xlabel("input-column tile", fontsize=6)
        if ax in axes[:, 0]:
            ax.set_ylabel("output-row tile", fontsize=6)
        ax.tick_params(labelsize=5)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), ticks=range(len(used)), shrink=0.5, aspect=30)
        cb.ax.set_yticklabels(used, fontsize=7)
        cb.set_label("codebook of the tile")
    fig.suptitle(title or "Plan map: codebook per tile, DVFS level per layer", fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
