"""Benchmark: per-tile-codebook GPTQ (and RTN) wall time and layer error.

    python benchmarks/bench_gptq.py --minilm --threads 2                 # all 36 MiniLM layers, CPU
    python benchmarks/bench_gptq.py --shape 4096x4096 --shape 11008x4096 --device cuda   # LLaMA-7B-shaped
    python benchmarks/bench_gptq.py --shape 1024x1024 --shape 2752x1024                  # reduced, CPU
    python benchmarks/bench_gptq.py --minilm-shapes --threads 2      # MiniLM's 36 shapes, synthetic weights
    python benchmarks/bench_gptq.py --vs-plain --shape 1024x1024 --shape 2752x1024 --threads 1 --old      # CPU
    python benchmarks/bench_gptq.py --vs-plain --shape 4096x4096 --shape 11008x4096 --shape 4096x11008 --device cuda --old

Each layer is tiled 128×128; tiles cycle through three codebooks (8-bit grid, odd 8-bit codes,
9 small codes), so every column holds three codebook groups (the general, slowest case).
MiniLM uses Hessians from 16×128 tokens of stdlib-docstring text; the synthetic shapes use
``W ~ N(0, 0.02²)`` and ``H = (2/n) XᵀX`` of correlated random inputs (n = 2048). Reported: wall
time of RTN and GPTQ per layer set, and the full error ``tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)``.

``--vs-plain``: GPTQ per plan against the plain GPTQ loop (``bench_scale.plain_gptq``: uniform INT4,
per-row min-max scale) on the same layers and the same damped H, both in float32 (the plain loop's
precision; per-plan GPTQ's default on CUDA), the per-plan scale search as the cost stage runs it by
default (``fast=True``; ``--exact-search``: float64). ``--old`` also times the per-codebook-group loop
this sweep replaced (the oracle in ``tests/test_exec_gptq.py``) and checks that both give the same
codes and scales bit for bit. Each method runs once untimed first (a 256×256 corner of the first layer:
Triton compilation, cuBLAS/cuSOLVER handles); CUDA is synchronized before each clock read.
"""

from __future__ import annotations

import argparse
import platform
import time

import pandas as pd
import torch

from halo_opt.execute.apply import TileGrid, add_damping, quantize_rtn, tile_codes
from halo_opt.execute.gptq import quantize_gptq

CODEBOOKS = {"int8": list(range(-128, 128)), "odd8": list(range(-127, 128, 2)), "c9": list(range(-4, 5))}


def grid_for(name: str, N: int, K: int, tile=(128, 128)) -> tuple[TileGrid, list[str]]:
    R, C = tile
    rows = [dict(tile=i, layer=name, row0=r, row1=min(r + R, N), col0=c, col1=min(c + C, K), macs=0)
            for i, (r, c) in enumerate((r, c) for r in range(0, N, R) for c in range(0, K, C))]
    names = list(CODEBOOKS)
    return TileGrid.from_tiles(name, pd.DataFrame(rows), (N, K)), [names[i % 3] for i in range(len(rows))]


def synthetic_layer(N: int, K: int, seed: int, device: str, n: int = 2048):
    g = torch.Generator().manual_seed(seed)
    W = 0.02 * torch.randn(N, K, generator=g)
    mix = (torch.randn(K, K, generator=g) / K ** 0.5 + torch.eye(K)).to(device)   # products on the device: K = 11008
    X = torch.randn(n, K, generator=g).to(device) @ mix                            # takes minutes on a CPU
    H = (2.0 / n) * (X.T.double() @ X.double())
    return W.to(device), H


def minilm_layers(device: str):
    from halo_opt.calibration.models import load_model
    from halo_opt.calibration.text import calibration_batch
    from halo_opt.execute.synthetic import hessians

    ad = load_model("minilm")
    tb = calibration_batch(ad.tokenizer, None, 16, 128, seed=0)
    H = hessians({l.name: l.module for l in ad.linears}, lambda: [ad.forward(b) for b in tb.batches(8)])
    for l in ad.linears:
        yield l.name, l.weight().to(device), H[l.name][0].to(device)


def rel_error(ql, W, H) -> float:
    D = ql.exact() - W.double()
    return float(((D @ H) * D).sum() / ((W.double() @ H) * W.double()).sum())


def run(layers, device: str, blocksize: int) -> pd.DataFrame:
    rows = []
    codes = tile_codes(CODEBOOKS, device)
    for name, W, H in layers:
        N, K = W.shape
        grid, tc = grid_for(name, N, K)
        Hd = add_damping(H, 0.01 * float(torch.diag(H).mean()))
        out = {"layer": name, "shape": f"{N}x{K}"}
        for method in ("rtn", "gptq"):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            ql = quantize_rtn(name, W, Hd, grid, tc, codes) if method == "rtn" else quantize_gptq(name, W, Hd, grid, tc, codes, blocksize)
            if device == "cuda":
                torch.cuda.synchronize()
            out[f"{method}_s"] = time.perf_counter() - t
            out[f"{method}_err_rel"] = rel_error(ql, W, H)
        rows.append(out)
        print(out, flush=True)
    return pd.DataFrame(rows)


def _timed(fn, device: str):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def vs_plain(shapes, device: str, blocksize: int, seed: int, exact_search: bool, old: bool, one_codebook: bool) -> pd.DataFrame:
    """Per layer: plain loop s, per-plan GPTQ s (new, and old with ``old``), ratios (float32, see module doc)."""
    from bench_scale import plain_gptq
    from halo_opt.execute.apply import ScaleSearch

    methods = {"plain": lambda W, Hd, grid, tc: plain_gptq(W, Hd, blocksize=blocksize)}
    kw = dict(blocksize=blocksize, dtype=torch.float32, scales=ScaleSearch(fast=not exact_search))
    codes = tile_codes(CODEBOOKS, device)
    methods["plan"] = lambda W, Hd, grid, tc: quantize_gptq("l", W, Hd, grid, tc, codes, **kw)
    if old:   # the per-codebook-group loop the one-lookup sweep replaced
        methods["old"] = lambda W, Hd, grid, tc: quantize_gptq("l", W, Hd, grid, tc, codes, lookup=False, **kw)
    rows, warm = [], False
    for i, (N, K) in enumerate(shapes):
        W, H = synthetic_layer(N, K, seed + i, device)
        Hd = add_damping(H, 0.01 * float(torch.diag(H).mean()))
        grid, tc = grid_for("l", N, K)
        if one_codebook:
            tc = ["int8"] * len(tc)
        if not warm:
            n, k = min(N, 256), min(K, 256)
            g, t = grid_for("l", n, k)
            for f in methods.values():
                _timed(lambda: f(W[:n, :k], Hd[:k, :k], g, t), device)
            warm = True
        out, res = {"shape": f"{N}x{K}"}, {}
        for m, f in methods.items():
            res[m], out[f"{m}_s"] = _timed(lambda: f(W, Hd, grid, tc), device)
        out["plan/plain"] = out["plan_s"] / out["plain_s"]
        if old:
            out["old/plain"] = out["old_s"] / out["plain_s"]
            out["bitwise"] = bool(torch.equal(res["plan"].q, res["old"].q) and torch.equal(res["plan"].scales, res["old"].scales))
        rows.append(out)
        print(out, flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", action="store_true", help="all planned MiniLM layers")
    ap.add_argument("--shape", action="append", default=[], help="NxK synthetic layer (repeatable)")
    ap.add_argument("--minilm-shapes", action="store_true", help="synthetic layers of MiniLM's 36 shapes (no model package needed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocksize", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vs-plain", action="store_true", help="per-plan GPTQ vs the plain GPTQ loop on the --shape layers")
    ap.add_argument("--old", action="store_true", help="with --vs-plain: also the previous per-group loop (and a bitwise check)")
    ap.add_argument("--exact-search", action="store_true", help="with --vs-plain: float64 scale search (default: fast, as the cost stage)")
    ap.add_argument("--one-codebook", action="store_true", help="with --vs-plain: every tile on int8 (one group per column)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {a.threads}, device {a.device}"
          + (f" ({torch.cuda.get_device_name()})" if a.device == "cuda" else ""))
    if a.vs_plain:
        if not a.shape:
            ap.error("--vs-plain needs --shape NxK")
        df = vs_plain([tuple(int(x) for x in s.lower().split("x")) for s in a.shape], a.device, a.blocksize, a.seed,
                      a.exact_search, a.old, a.one_codebook)
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        tot = {c: df[c].sum() for c in df.columns if c.endswith("_s")}
        print("total: " + ", ".join(f"{c[:-2]} {v:.2f} s" for c, v in tot.items())
              + f"; plan/plain {tot['plan_s'] / tot['plain_s']:.2f}" + (f", old/plain {tot['old_s'] / tot['plain_s']:.2f}" if a.old else ""))
        return
    frames = []
    if a.minilm:
        frames.append(run(minilm_layers(a.device), a.device, a.blocksize))
    shapes = [tuple(int(x) for x in s.lower().split("x")) for s in a.shape]
    if a.minilm_shapes:  # per block: q, k, v, attn-out 384x384; intermediate 1536x384; output 384x1536
        shapes += [(384, 384)] * 4 * 6 + [(1536, 384)] * 6 + [(384, 1536)] * 6
    if shapes:
        frames.append(run(((f"{N}x{K}#{i}", *synthetic_layer(N, K, a.seed + i, a.device)) for i, (N, K) in enumerate(shapes)), a.device, a.blocksize))
    if not frames:
        ap.error("give --minilm, --minilm-shapes and/or --shape NxK")
    df = pd.concat(frames)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"total: rtn {df['rtn_s'].sum():.2f} s, gptq {df['gptq_s'].sum():.2f} s over {len(df)} layers")


if __name__ == "__main__":
    main()
