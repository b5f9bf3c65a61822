"""Plan execution (RTN/GPTQ) with the layers spread over several processes / GPUs of one host.

Split: **by layer.** GPTQ of a layer needs only its own ``W`` and (damped) ``H``, so the
planned layers are dealt to the ranks by longest-processing-time on the cost ``N·K² + K³``
(the column sweep and the Cholesky/inverse of ``H``), deterministically; each rank quantizes its
layers with the one-process code (:func:`halo_opt.execute.run.quantize_layers`, ``only=``) and
sends the integer codes and scales to rank 0, which assembles the :class:`Execution` in the
plan's layer order. Each layer is computed by the same operations on the same inputs as in one
process, so the codes and scales are **bitwise identical** (tested, gloo). Rank 0 runs the rest
of the stage unchanged (evaluation, validation, report, export; it alone writes files); the
workers only quantize.

Protocol: rank 0 holds a :class:`QuantPool` (``Context.pool``); every ``quantize_layers`` call
(the plan, then each GPTQ/RTN baseline) broadcasts a job (a JSON header: method, block size,
codebooks, the cost folder's hash; and the per-tile codebook indices as int32), the workers,
looping in :func:`_serve`, answer with their layers; a ``stop`` job ends them.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import torch

from ..procgroup import Shard, run_world
from ..errors import UserError
from .apply import QuantLayer, TileGrid
from .run import Execution, quantize_layers


def assign_layers(costs, world: int) -> dict[str, int]:
    """``{layer: rank}``: longest-processing-time on ``N·K² + K³``; ties by plan order, then the lowest rank."""
    lay = costs.layers.set_index("layer")
    names = list(dict.fromkeys(costs.tiles["layer"]))
    cost = {n: float(lay.at[n, "out_features"]) * float(lay.at[n, "in_features"]) ** 2 + float(lay.at[n, "in_features"]) ** 3
            for n in names}
    load = [0.0] * world
    out: dict[str, int] = {}
    for n in sorted(names, key=lambda n: (-cost[n], names.index(n))):
        r = min(range(world), key=lambda r: (load[r], r))
        out[n] = r
        load[r] += cost[n]
    return out


def _bcast_job(shard: Shard, header: dict | None, tiles: torch.Tensor | None) -> tuple[dict, torch.Tensor | None]:
    """Rank 0 sends (header, int32 tile codebook indices); the others receive them."""
    import torch.distributed as dist

    dev = shard.device
    if shard.main:
        hb = torch.tensor(list(json.dumps(header).encode()), dtype=torch.uint8, device=dev)
        sizes = torch.tensor([hb.numel(), 0 if tiles is None else tiles.numel()], dtype=torch.int64, device=dev)
    else:
        sizes = torch.zeros(2, dtype=torch.int64, device=dev)
    dist.broadcast(sizes, 0)
    if not shard.main:
        hb = torch.empty(int(sizes[0]), dtype=torch.uint8, device=dev)
    dist.broadcast(hb, 0)
    header = json.loads(bytes(hb.cpu().tolist()).decode())
    if int(sizes[1]):
        t = tiles.to(dev, torch.int32) if shard.main else torch.empty(int(sizes[1]), dtype=torch.int32, device=dev)
        dist.broadcast(t, 0)
        tiles = t
    return header, tiles


class QuantPool:
    """Rank 0's handle on the workers: :meth:`quantize` has the signature of ``quantize_layers``."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.broken = False  # a job failed half way: the workers are not at the job loop, do not send 'stop'

    def quantize(self, weights, hessian, costs, tile_codebook, codebooks, method, device, blocksize, progress) -> Execution:
        self.broken = True
        ex = self._quantize(weights, hessian, costs, tile_codebook, codebooks, method, device, blocksize, progress)
        self.broken = False
        return ex

    def _quantize(self, weights, hessian, costs, tile_codebook, codebooks, method, device, blocksize, progress) -> Execution:
        t0 = time.perf_counter()
        names = sorted(codebooks)
        idx = {n: i for i, n in enumerate(names)}
        tiles = torch.tensor([idx[c] for c in tile_codebook], dtype=torch.int32)
        header = {"op": "quantize", "method": method, "blocksize": blocksize, "codebooks": {n: list(codebooks[n]) for n in names},
                  "costs_sha256": costs.sha256}
        _bcast_job(self.shard, header, tiles)
        owner = assign_layers(costs, self.shard.world)
        mine = quantize_layers(weights, hessian, costs, tile_codebook, codebooks, method, device, blocksize, progress,
                               only={n for n, r in owner.items() if r == 0})
        got = _exchange(self.shard, costs, owner, mine.layers, device)
        order = list(dict.fromkeys(costs.tiles["layer"]))
        return Execution(method, {n: got[n] for n in order}, list(tile_codebook), {k: list(v) for k, v in codebooks.items()},
                         {n: costs.damp(n) for n in order}, time.perf_counter() - t0)

    def stop(self) -> None:
        if not self.broken:
            _bcast_job(self.shard, {"op": "stop"}, None)


def _exchange(shard: Shard, costs, owner: dict[str, int], local: dict[str, QuantLayer], device: str) -> dict[str, QuantLayer]:
    """Every layer's codes and scales to rank 0 (in plan order, from its owner); rank 0 gets them all."""
    import torch.distributed as dist

    out = dict(local)
    for n in dict.fromkeys(costs.tiles["layer"]):
        r = owner[n]
        if r == 0:
            continue
        if shard.rank == r:
            ql = local[n]
            dist.send(ql.q.to(shard.device, torch.int32).contiguous(), 0)
            dist.send(ql.scales.to(shard.device, torch.float64).contiguous(), 0)
        elif shard.main:
            row = costs.layers[costs.layers["layer"] == n].iloc[0]
            N, K = int(row["out_features"]), int(row["in_features"])
            grid = TileGrid.from_tiles(n, costs.layer_tiles(n), (N, K))
            q = torch.empty(N, K, dtype=torch.int32, device=shard.device)
            s = torch.empty(N, len(grid.col_edges) - 1, dtype=torch.float64, device=shard.device)
            dist.recv(q, r)
            dist.recv(s, r)
            out[n] = QuantLayer(n, q.to(torch.int16).to(device), s.to(device), grid)
    return out


# -- processes -----------------------------------------------------------------------------

def _prepare(shard: Shard, a: dict) -> Any:
    """Nothing before joining: a worker loads its inputs in :func:`_serve`, while rank 0 builds its context."""
    return None if shard.main else a


def _load(a: dict):
    """A worker's cost folder, the model's planned weights and (lazily) its Hessians."""
    from ..calibration.models import load_model
    from .inputs import load_costs, load_hessian

    costs = load_costs(a["costs"])
    ad = load_model(a["model"])
    weights = {l.name: l.weight() for l in ad.linears}
    return costs, weights, (lambda n: load_hessian(a["calib"], n).H)


def _serve(shard: Shard, a: dict) -> None:
    costs, weights, hessian = _load(a)
    while True:
        header, tiles = _bcast_job(shard, None, None)
        if header["op"] == "stop":
            return
        if header["costs_sha256"] != costs.sha256:
            raise UserError(f"worker {shard.rank} loaded another cost folder than rank 0; give every rank the same --costs")
        names = sorted(header["codebooks"])
        tc = [names[i] for i in tiles.cpu().tolist()]
        owner = assign_layers(costs, shard.world)
        mine = quantize_layers(weights, hessian, costs, tc, header["codebooks"], header["method"], shard.device,
                               header["blocksize"], only={n for n, r in owner.items() if r == shard.rank})
        _exchange(shard, costs, owner, mine.layers, shard.device)


def with_pool(world: int, device: str, costs: str, calib: str, model: str, flow: Callable[[QuantPool | None, str], Any],
              threads: int | None = None) -> Any:
    """Run ``flow(pool, device)`` as rank 0 of ``world`` processes whose workers quantize their share of
    every layer set the flow asks for (``pool`` None when ``world`` is 1); ``device`` is rank 0's
    (``cuda`` -> ``cuda:0``). The workers load ``model``, ``costs`` and ``calib`` themselves."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("`halo-opt execute` spawns its own processes: run it without torchrun, with --world N")

    def main(shard: Shard, _):
        pool = QuantPool(shard) if shard.world > 1 else None
        try:
            return flow(pool, shard.device if shard.world > 1 else device)
        finally:
            if pool is not None:
                pool.stop()

    return run_world(world, device, _prepare, _serve, {"costs": str(costs), "calib": str(calib), "model": str(model)},
                     threads, main=main)
