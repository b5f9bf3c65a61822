"""RTN's scale search: per tile (the old loop, kept here as the baseline) vs one search per
(column block, codebook) (``halo_opt.execute.apply.quantize_rtn``; GPTQ's pre-loop search is batched
the same way), side by side in one run on a demo's plan: bitwise identity of codes and scales, and
the time ratio.

    python benchmarks/bench_exec_search.py --run runs/demo --plan runs/demo/plans/energy-cpsat.json

Integer codebooks only (the baseline loop is the integer one it replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from halo_opt.execute.apply import ScaleSearch, TileGrid, add_damping, quantize_rtn, tile_codes
from halo_opt.execute.pipeline import context_from_folders
from halo_opt.planfile import load_plan
from halo_opt.quantize import quantize_to_codes


def per_tile_scales(W, H, grid, tile_codebook, codes, scales):
    """The baseline: one scale search per tile, then RTN (the executor's loop before the batching)."""
    W, H = W.double(), H.double()
    N, K = W.shape
    q = torch.empty(N, K, dtype=torch.int16)
    S = torch.empty(N, len(grid.col_edges) - 1, dtype=torch.float64)
    for i, (r0, r1) in enumerate(zip(grid.row_edges, grid.row_edges[1:])):
        for j, (c0, c1) in enumerate(zip(grid.col_edges, grid.col_edges[1:])):
            c = codes[tile_codebook[grid.tile[i, j]]]
            s = scales(W[r0:r1, c0:c1], H[c0:c1, c0:c1], c).to(torch.float64).reshape(-1)
            qt, _ = quantize_to_codes(W[r0:r1, c0:c1], s[:, None], c)
            q[r0:r1, c0:c1] = qt.round().to(torch.int16)
            S[r0:r1, j] = s
    return q, S


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a demo run folder (costs/, calib/)")
    ap.add_argument("--plan", required=True)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    plan = load_plan(a.plan).to_dict()
    ctx = context_from_folders(f"{a.run}/costs", f"{a.run}/calib", a.model, n_sequences=1)
    costs, codes = ctx.costs, tile_codes(plan["codebooks"])
    ss = ScaleSearch.from_meta(costs.meta)
    tc = plan["tile_codebook"]
    out = {"plan": a.plan, "threads": a.threads, "load_avg": os.getloadavg()[0]}
    t_old = t_new = 0.0
    same = True
    names = list(ctx.weights)
    for name in names:
        grid = TileGrid.from_tiles(name, costs.layer_tiles(name), tuple(ctx.weights[name].shape))
        H = add_damping(ctx.hessian(name).double(), costs.damp(name))
        t = time.perf_counter()
        q0, s0 = per_tile_scales(ctx.weights[name], H, grid, tc, codes, ss)
        t_old += time.perf_counter() - t
        t = time.perf_counter()
        ql = quantize_rtn(name, ctx.weights[name], H, grid, tc, codes, ss)
        t_new += time.perf_counter() - t
        same &= bool(torch.equal(q0, ql.q) and torch.equal(s0, ql.scales))
    out["rtn"] = {"layers": len(names), "bitwise_identical": same, "per_tile_s": round(t_old, 2),
                  "grouped_s": round(t_new, 2), "speedup": round(t_old / t_new, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
