"""Apply a plan to a model's weights (never re-plans): quantize every planned layer, build the
dequantized model. Uniform INT8/INT4 baselines go through the same path with one codebook."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import UserError
from .apply import QuantLayer, ScaleMemo, ScaleSearch, TileGrid, add_damping, quantize_rtn, tile_codes
from .gptq import quantize_gptq
from .inputs import CostFolder, check_plan

METHODS = ("rtn", "gptq")
UNIFORM = {"int8": list(range(-128, 128)), "int4": list(range(-8, 8))}


@dataclass
class Execution:
    """Result of quantizing per plan: integer codes + scales per layer."""

    method: str
    layers: dict[str, QuantLayer]
    tile_codebook: list[str]
    codebooks: dict[str, list[int]]
    damp: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def histograms(self) -> dict[int, dict[int, int]]:
        from .apply import code_histograms

        out: dict[int, dict[int, int]] = {}
        for ql in self.layers.values():
            out.update(code_histograms(ql))
        return out


def quantize_layers(weights: dict[str, torch.Tensor], hessian: Callable[[str], torch.Tensor], costs: CostFolder,
                    tile_codebook: list[str], codebooks: dict[str, list[int]], method: str = "rtn",
                    device: str = "cpu", blocksize: int = 128, progress: bool = False, pool=None,
                    only: set[str] | None = None, memo: ScaleMemo | None = None) -> Execution:
    """Quantize each layer of ``costs.tiles`` with the given per-tile codebooks.

    ``weights[layer]`` float [N, K]; ``hessian(layer)`` the undamped calibration H (float64), damped
    here by the cost table's ``damp`` (the same H the cost stage used). ``pool``: a
    :class:`halo_opt.execute.distributed.QuantPool` spreading the layers over processes (same
    result); ``only``: quantize just these layers (one rank's share); ``memo``: RTN row scales kept
    across calls on the same weights and Hessians (:class:`~.apply.ScaleMemo`; same result).
    """
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'; use one of {', '.join(METHODS)}")
    if pool is not None:
        return pool.quantize(weights, hessian, costs, tile_codebook, codebooks, method, device, blocksize, progress)
    codes = tile_codes(codebooks, device, costs.codebooks)
    search = ScaleSearch.from_meta(costs.meta)
    t0 = time.perf_counter()
    layer_names = [n for n in dict.fromkeys(costs.tiles["layer"]) if only is None or n in only]
    out, damps = {}, {}
    from ..progress import Steps

    with Steps(f"{method} quantize (layers)", len(layer_names), progress) as bar:
        for name in layer_names:
            if name not in weights:
                raise UserError(f"planned layer '{name}' is not in the model; the plan is for another model, pass the right --model")
            W = weights[name].detach().to(device)
            grid = TileGrid.from_tiles(name, costs.layer_tiles(name), tuple(W.shape))
            d = costs.damp(name)
            H = add_damping(hessian(name).to(device, torch.float64), d)
            if H.shape != (W.shape[1], W.shape[1]):
                raise UserError(f"Hessian of '{name}' is {tuple(H.shape)} but the layer has {W.shape[1]} inputs; calibration is for another model")
            fn = quantize_gptq if method == "gptq" else quantize_rtn
            kw = {"blocksize": blocksize} if method == "gptq" else {"memo": _seeded(memo, costs, name, grid, tile_codebook, codes, d, search, W.device),
                                                                    "damp": d}
            out[name] = fn(name, W, H, grid, tile_codebook, codes, scales=search, **kw)
            damps[name] = d
            bar.advance(what=name)
    return Execution(method, out, list(tile_codebook), {k: list(v) for k, v in codebooks.items()}, damps, time.perf_counter() - t0)


def _seeded(memo: ScaleMemo | None, costs: CostFolder, name: str, grid: TileGrid, tile_codebook: list[str], codes: dict,
            damp: float, search: ScaleSearch, device) -> ScaleMemo | None:
    """RTN's scale memo for layer ``name``, holding the cost stage's chosen scales of the plan's
    codebooks on this layer when the cost folder kept them (then RTN searches nothing); without
    ``memo``, a memo of this layer only."""
    if not costs.has_scales:
        return memo
    index = {b: i for i, b in enumerate(costs.codebooks)}
    memo = memo if memo is not None else ScaleMemo()
    memo.seed(name, grid, [(index[b], codes[b]) for b in {tile_codebook[t] for t in grid.tile.ravel()}],
              lambda: costs.scales(name, grid.row_edges[-1], len(grid.col_edges) - 1), damp, search, device)
    return memo


def execute_plan(plan: dict, costs: CostFolder, weights: dict[str, torch.Tensor], hessian: Callable[[str], torch.Tensor],
                 method: str = "rtn", device: str = "cpu", blocksize: int = 128, progress: bool = False, pool=None,
                 memo: ScaleMemo | None = None) -> Execution:
    """Check ``plan`` against ``costs`` and the model's layers, then quantize per plan."""
    check_plan(plan, costs, list(weights))
    return quantize_layers(weights, hessian, costs, plan["tile_codebook"], plan["codebooks"], method, device, blocksize, progress, pool,
                           memo=memo)


def uniform_baseline(bits: str, costs: CostFolder, weights, hessian, method: str = "rtn", device: str = "cpu",
                     blocksize: int = 128, progress: bool = False, pool=None, memo: ScaleMemo | None = None) -> Execution:
    """Every tile on the uniform signed grid ``int8`` [-128, 127] or ``int4`` [-8, 7]."""
    return quantize_layers(weights, hessian, costs, [bits] * len(costs.tiles), {bits: UNIFORM[bits]}, method, device, blocksize,
                           progress, pool, memo=memo)


def dequantized_model(model: torch.nn.Module, layers: dict[str, torch.nn.Module], ex: Execution) -> torch.nn.Module:
    """A deep copy of ``model`` whose planned linear layers hold ``float32(q)·float32(s)``."""
    m = copy.deepcopy(model)
    mods = dict(m.named_modules())
    name_of = {id(mod): n for n, mod in model.named_modules()}
    for lname, ql in ex.layers.items():
        tgt = mods[name_of[id(layers[lname])]]
        w = ql.dequantize(tgt.weight.dtype).to(tgt.weight.device)
        with torch.no_grad():  # GPT-2 Conv1D stores W transposed ([in, out])
            tgt.weight.copy_(w if tgt.weight.shape == w.shape and isinstance(tgt, torch.nn.Linear) else w.T)
    return m
