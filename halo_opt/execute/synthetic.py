"""Small synthetic inputs for the executor's tests and benchmarks (no other stage needed).

:func:`hessians` accumulates ``H = (2/n) Σ x xᵀ`` per linear layer with forward hooks (float64);
:func:`write_costs` writes a contract-§4 cost folder for given weights/Hessians (errors from
:func:`halo_opt.quantize.tile_errors`); :func:`make_plan` a contract-§6 plan for it. The
codebooks and levels are toy numbers (4-bit signed codes, delay = 10·|code| + 50 ps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..artifacts import sha256_file, write_json
from ..costfolder import save_costs

CODEBOOKS = {
    "full": list(range(-8, 8)),
    "c9": list(range(-4, 5)),
    "pow2": [-8, -4, -2, -1, 0, 1, 2, 4],
    "c3": [-1, 0, 1],
}
LEVELS = [  # name, V, f; compat: codebook delay must be <= 1e12/f ps
    {"name": "nominal", "voltage_v": 0.9, "freq_hz": 7e9, "leak_power_w": 1e-3},
    {"name": "fast", "voltage_v": 0.9, "freq_hz": 1e10, "leak_power_w": 1e-3},
    {"name": "turbo", "voltage_v": 1.0, "freq_hz": 1.5e10, "leak_power_w": 2e-3},
]


def code_delay_ps(q: int) -> float:
    return 10.0 * abs(q) + 50.0


def code_energy_fj(q: int) -> float:
    return 1.0 + 0.5 * bin(q & 0xF).count("1")


def profile_table() -> pd.DataFrame:
    codes = range(-8, 8)
    return pd.DataFrame({"code": list(codes), "delay_ps": [code_delay_ps(q) for q in codes], "energy_fj": [code_energy_fj(q) for q in codes]})


@torch.no_grad()
def hessians(layers: dict[str, torch.nn.Module], run: Callable[[], None]) -> dict[str, tuple[torch.Tensor, int]]:
    """``{layer: (H float64, n_tokens)}`` with ``H = (2/n) Σ_t x_t x_tᵀ`` over the inputs ``run()`` feeds."""
    acc: dict[str, list] = {}

    def hook(name, x):
        x = x.reshape(-1, x.shape[-1]).double()
        a = acc.setdefault(name, [torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64), 0])
        a[0] += x.T @ x
        a[1] += x.shape[0]

    hs = [m.register_forward_hook(lambda mod, inp, out, n=n: hook(n, inp[0])) for n, m in layers.items()]
    try:
        run()
    finally:
        for h in hs:
            h.remove()
    return {n: (2.0 * S / k, k) for n, (S, k) in acc.items()}


def write_calib(folder: str | Path, H: dict[str, tuple[torch.Tensor, int]]) -> Path:
    """A calibration folder of given Hessians, through the folder's owner (:mod:`halo_opt.calibration.hessian`)."""
    from ..calibration.hessian import save_calibration_index, save_hessian

    folder = Path(folder)
    for n, (h, k) in H.items():
        save_hessian(folder, n, {"H": h.contiguous(), "n_tokens": torch.tensor(k)})
    save_calibration_index(folder, [{"name": n, "in_features": h.shape[0], "tokens": k} for n, (h, k) in H.items()],
                           {"model_sha256": "synthetic"})
    return folder


def write_costs(folder: str | Path, weights: dict[str, torch.Tensor], H: dict[str, torch.Tensor], tile: tuple[int, int],
                damp_rel: float = 0.0, codebooks: dict[str, list[int]] | None = None, tokens: int = 16) -> Path:
    """A contract-§4 cost folder for ``weights``/``H`` with ``tile = (R, C)`` (edge tiles smaller)."""
    from ..quantize import tile_errors

    codebooks = codebooks or CODEBOOKS
    folder = Path(folder)
    R, C = tile
    lrows, trows, erows, latrows = [], [], [], []
    g = 0
    for order, (name, W) in enumerate(weights.items()):
        N, K = W.shape
        h = H[name].double()
        d = damp_rel * float(torch.diag(h).mean())
        hd = h + d * torch.eye(K, dtype=torch.float64)
        W = W.double()
        cycles = 0
        for r0 in range(0, N, R):
            for c0 in range(0, K, C):
                r1, c1 = min(r0 + R, N), min(c0 + C, K)
                e = tile_errors(W[r0:r1, c0:c1], hd[c0:c1, c0:c1], list(codebooks.values()))
                trows.append(dict(tile=g, layer=name, row0=r0, row1=r1, col0=c0, col1=c1, macs=(r1 - r0) * (c1 - c0) * tokens))
                erows.append({"tile": g, **{k: float(v) for k, v in zip(codebooks, e)}})
                cycles += 2 * R + C + tokens - 2
                g += 1
        lrows.append(dict(layer=name, order=order, out_features=N, in_features=K, tokens=tokens, macs=N * K * tokens,
                          tr_WHW=float(((W @ h) * W).sum()), cycles=cycles, bytes=N * K, damp=d))
        for L in LEVELS:
            latrows.append(dict(layer=name, level=L["name"], seconds=cycles / L["freq_hz"], compute_bound=True))
    cbs = [{"name": k, "codes": v, "delay_ps": max(map(code_delay_ps, v)), "energy_fj": float(np.mean([code_energy_fj(q) for q in v])),
            "family": "synthetic"} for k, v in codebooks.items()]
    compat = {c["name"]: {L["name"]: (1e12 / L["freq_hz"] - c["delay_ps"]) if c["delay_ps"] <= 1e12 / L["freq_hz"] else None
                          for L in LEVELS} for c in cbs}
    save_costs(folder, {"inputs": {"model_sha256": "synthetic", "profile_sha256": "toy"}, "tile": [R, C],
                        "normaliser": float(sum(r["tr_WHW"] for r in lrows)), "v0": 0.9,
                        "switch": {"time_s": 1e-6, "energy_j": 1e-9}},
               pd.DataFrame(lrows), pd.DataFrame(trows), pd.DataFrame(erows), pd.DataFrame(latrows), cbs, LEVELS, compat)
    return folder


def make_plan(costs_dir: str | Path, tile_codebook: list[str] | Callable[[int], str], levels: dict[str, str] | str = "nominal") -> dict:
    """A contract-§6 plan (one domain per layer) for the cost folder."""
    from .inputs import load_costs

    c = load_costs(costs_dir)
    tc = [tile_codebook(g) for g in range(len(c.tiles))] if callable(tile_codebook) else list(tile_codebook)
    layers = list(dict.fromkeys(c.tiles["layer"]))
    lv = {l: (levels if isinstance(levels, str) else levels[l]) for l in layers}
    from ..planfile import validate

    return validate({"format_version": 2,
                     "meta": {"costs_sha256": sha256_file(Path(costs_dir) / "meta.json"), "model_sha256": "synthetic", "profile_sha256": "toy"},
                     "scenario": {}, "solver": {"name": "synthetic", "status": "feasible"},
                     "levels": {L["name"]: {"voltage_v": L["voltage_v"], "freq_hz": L["freq_hz"]} for L in LEVELS},
                     "codebooks": {k: c.codebooks[k]["codes"] for k in sorted(set(tc))},
                     "domains": [{"domain": l, "layers": [l], "level": lv[l]} for l in layers], "tile_codebook": tc}).to_dict()
