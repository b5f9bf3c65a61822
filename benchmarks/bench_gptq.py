"""Benchmark: per-tile-codebook GPTQ (and RTN) wall time and layer error.

    python benchmarks/bench_gptq.py --minilm --threads 2                 # all 36 MiniLM layers, CPU
    python benchmarks/bench_gptq.py --shape 4096x4096 --shape 11008x4096 --device cuda   # LLaMA-7B-shaped
    python benchmarks/bench_gptq.py --shape 1024x1024 --shape 2752x1024                  # reduced, CPU
    python benchmarks/bench_gptq.py --minilm-shapes --threads 2      # MiniLM's 36 shapes, synthetic weights

Each layer is tiled 128×128; tiles cycle through three codebooks (8-bit grid, odd 8-bit codes,
9 small codes), so every column holds three codebook groups (the general, slowest case).
MiniLM uses Hessians from 16×128 tokens of stdlib-docstring text; the synthetic shapes use
``W ~ N(0, 0.02²)`` and ``H = (2/n) XᵀX`` of correlated random inputs (n = 2048). Reported: wall
time of RTN and GPTQ per layer set, and the full error ``tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)``.
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
    mix = torch.randn(K, K, generator=g) / K ** 0.5 + torch.eye(K)
    X = torch.randn(n, K, generator=g) @ mix
    H = (2.0 / n) * (X.T.double() @ X.double())
    return W.to(device), H.to(device)


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


def _cuda_lut_workaround() -> None:
    """halo_opt.quantize._nearest_lut builds its probe points on the CPU, so it fails for CUDA codes
    (reported to its owner); build the table on the CPU — the caller moves it to the device."""
    import halo_opt.quantize as hq

    f = getattr(hq, "_nearest_lut", None)
    if f is not None and not getattr(f, "_cpu_wrapped", False):
        def lut(c, _f=f):
            return _f(c.cpu())
        lut._cpu_wrapped = True
        hq._nearest_lut = lut


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minilm", action="store_true", help="all planned MiniLM layers")
    ap.add_argument("--shape", action="append", default=[], help="NxK synthetic layer (repeatable)")
    ap.add_argument("--minilm-shapes", action="store_true", help="synthetic layers of MiniLM's 36 shapes (no model package needed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocksize", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda":
        _cuda_lut_workaround()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {a.threads}, device {a.device}"
          + (f" ({torch.cuda.get_device_name()})" if a.device == "cuda" else ""))
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
