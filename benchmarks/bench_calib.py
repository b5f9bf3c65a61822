"""Calibration + cost-table speed.

  python benchmarks/bench_calib.py minilm --threads 2           # MiniLM 64x128 calibrate + costs on CPU
  python benchmarks/bench_calib.py llama7b --device cuda         # LLaMA-2-7B-shaped layers, random weights
  python benchmarks/bench_calib.py llama7b --small               # same path at reduced size (CPU, tested)
  python benchmarks/bench_calib.py summary COSTS_DIR             # relative error per codebook, latency per level

``llama7b`` times (a) Hessian accumulation H = (2/n) Σ x xᵀ (float64) through the streaming hooks on
a chain of random linears shaped like one LLaMA-2-7B block's distinct shapes (q/k/v/o 4096→4096,
gate/up 4096→11008, down 11008→4096), against the FLOP bound 2·T·K² of XᵀX, and (b) the cost
tables (per 128×128 tile × codebook error with the per-row scale search) against the FLOP bound
of the error GEMMs 2·N·K·k_t per (codebook, grid point); on CUDA it also measures the float32 and
TF32 8192³ GEMM rates in the same run and reports each layer's error-GEMM rate as % of float32.
Codebooks come from a synthetic 8-bit MAC profile (delay and energy growing with the code's
popcount) through ``build_codebooks``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from halo_opt.calibration import TokenBatch, calibrate, calibration_batch, from_module, load_model
from halo_opt.costs import build_costs, layer_tile_errors
from halo_opt.hardware.codebooks import build_codebooks, save_codebooks
from halo_opt.hardware.profile import MacProfile
from halo_opt.quantize import scale_grid


def synthetic_profile(folder: Path) -> list:
    codes = np.arange(-128, 128)
    pop = np.array([bin(int(c) & 255).count("1") for c in codes])
    rng = np.random.default_rng(0)
    static = 400 + 35 * pop + rng.random(256) * 25
    prof = MacProfile(pd.DataFrame({"code": codes, "delay_static_ps": static, "delay_float_ps": static * 0.9,
                                    "energy_fj": 80 + 9 * pop + rng.random(256)}), {"v0": 1.0, "leakage_w": 1e-6})
    prof.save(folder)
    books = build_codebooks(prof)
    save_codebooks(folder / "codebooks.json", books)
    return books


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_minilm(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_calib_"))
    books = synthetic_profile(tmp / "prof")
    t = time.perf_counter()
    ad = load_model("minilm")
    tb = calibration_batch(ad.tokenizer, None, args.sequences, args.seq_len, 0, max_length=ad.max_length)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    calibrate(ad, tb, tmp / "calib", device=args.device, progress=False)
    t_cal = time.perf_counter() - t
    t = time.perf_counter()
    build_costs(tmp / "calib", tmp / "prof", tmp / "costs", "tpu_like", (128, 128), model=ad, device=args.device, progress=False)
    t_cost = time.perf_counter() - t
    n_w = sum(l.in_features * l.out_features for l in ad.linears)
    return {"bench": "minilm", "threads": torch.get_num_threads(), "device": args.device, "tokens": tb.n_tokens,
            "layers": len(ad.linears), "weights": n_w, "codebooks": len(books), "grid": len(scale_grid()),
            "load_and_tokenise_s": round(t_load, 2), "calibrate_s": round(t_cal, 2), "costs_s": round(t_cost, 2),
            "costs_ns_per_weight_codebook_grid": round(1e9 * t_cost / (n_w * len(books) * len(scale_grid())), 2)}


class Chain(nn.Module):
    """Embedding + the distinct LLaMA-2-7B block shapes in sequence (random weights)."""

    def __init__(self, d: int, ff: int, vocab: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(vocab, d)
        self.q, self.up, self.down = nn.Linear(d, d, bias=False), nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)

    def forward(self, ids):
        return self.down(torch.nn.functional.silu(self.up(self.q(self.emb(ids)))))


def matmul_tflops(device: str, tf32: bool = False, n: int = 8192, reps: int = 10) -> float:
    """Measured float32 (``tf32=False``) or TF32 GEMM rate n×n×n on ``device`` (TFLOP/s, median of ``reps``)."""
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=g, device=device) for _ in range(2))
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        ts = []
        for i in range(reps + 3):
            sync(device)
            t = time.perf_counter()
            a @ b
            sync(device)
            ts.append(time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * n**3 / sorted(ts[3:])[reps // 2] / 1e12


def bench_llama(args) -> dict:
    d, ff, seqs, L = (256, 688, 8, 64) if args.small else (4096, 11008, args.sequences, args.seq_len)
    dev = args.device
    model = Chain(d, ff, 32000, 0).to(dev)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 32000, (seqs, L), generator=g)
    tb = TokenBatch(ids, torch.ones_like(ids), {"seed": 1})
    ad = from_module(model, lambda m, b: m(b["input_ids"]), name="llama7b-shapes")
    tmp = Path(tempfile.mkdtemp(prefix="bench_llama_"))
    books = synthetic_profile(tmp / "prof")
    calibrate(ad, TokenBatch(ids[:1], torch.ones_like(ids[:1])), tmp / "warm", device=dev, progress=False)  # warm-up
    sync(dev)
    t = time.perf_counter()
    calibrate(ad, tb, tmp / "calib", device=dev, batch_size=8, progress=False)
    sync(dev)
    t_h = time.perf_counter() - t
    T = seqs * L
    flop_h = sum(2 * T * l.in_features ** 2 for l in ad.linears)
    from halo_opt.calibration.hessian import load_hessian

    timing = json.loads((tmp / "calib/meta.json").read_text())["timing_s"]
    t_acc = timing["accumulate_s"]
    out = {"bench": "llama7b-shapes", "small": args.small, "device": dev, "threads": torch.get_num_threads(), "tokens": T,
           "calibrate_total_s": round(t_h, 3), "calibrate_timing_s": timing, "hessian_flop": flop_h,
           "hessian_accumulate_gflops": round(flop_h / t_acc / 1e9, 1),
           "codebooks": len(books), "grid": len(scale_grid()), "layers": []}
    books_used = books[: args.codebooks] if args.codebooks else books
    f = scale_grid()
    for lin in ad.linears:
        W = lin.weight().to(dev, torch.float64)
        H = load_hessian(tmp / "calib", lin.name, dev)["H"]
        if dev.startswith("cuda"):    # warm-up: kernel compilation, cached pinned host buffers of this size
            layer_tile_errors(W, H, (128, 128), books_used, f, fast=True)
        else:
            layer_tile_errors(W[:128, :256], H[:256, :256], (128, 128), books_used[:1], f)
        sync(dev)
        t = time.perf_counter()
        layer_tile_errors(W, H, (128, 128), books_used, f, fast=True)
        sync(dev)
        dt = time.perf_counter() - t
        N, K = W.shape
        flop = 2 * N * K * 128 * len(books_used) * len(f)
        out["layers"].append({"layer": lin.name, "shape": [N, K], "codebooks": len(books_used), "costs_s": round(dt, 3),
                              "error_gemm_flop": flop, "gflops": round(flop / dt / 1e9, 1)})
    if dev.startswith("cuda"):                                  # the ceilings, measured in the same run
        fp32, tf32 = matmul_tflops(dev), matmul_tflops(dev, tf32=True)
        out |= {"fp32_matmul_tflops": round(fp32, 1), "tf32_matmul_tflops": round(tf32, 1)}
        for lay in out["layers"]:
            lay["pct_of_fp32_matmul"] = round(100 * lay["gflops"] / 1e3 / fp32, 1)
    return out


def summarise(costs_dir: Path) -> dict:
    """Relative error Σ_g e_gc / normaliser per codebook and per-pass latency per level of a cost folder."""
    meta = json.loads((costs_dir / "meta.json").read_text())
    err = pd.read_parquet(costs_dir / "errors.parquet").drop(columns="tile")
    lat = pd.read_parquet(costs_dir / "latency.parquet")
    lv = lat.groupby("level").agg(seconds=("seconds", "sum"), compute_bound=("compute_bound", "mean"))
    return {"model": meta["model"], "accelerator": meta["accelerator"], "workload": meta["workload"], "tile": meta["tile"],
            "n_tiles": meta["n_tiles"], "normaliser": meta["normaliser"], "wall_s": meta["wall_s"],
            "rel_error": {c: float(err[c].sum() / meta["normaliser"]) for c in err.columns},
            "pass_latency_s": {k: float(v) for k, v in lv["seconds"].items()},
            "compute_bound_share": {k: float(v) for k, v in lv["compute_bound"].items()}}


def main(argv=None) -> None:
    if argv and argv[0] == "summary":
        print(json.dumps(summarise(Path(argv[1])), indent=1))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["minilm", "llama7b"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    p.add_argument("--sequences", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--codebooks", type=int, default=0, help="use only the first N codebooks (0: all)")
    p.add_argument("--small", action="store_true", help="reduced layer sizes (CPU smoke)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = bench_minilm(args) if args.what == "minilm" else bench_llama(args)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
