"""Benchmark: full per-code characterization of 8-bit MACs (static + floating timing, energy).

For each design (array / booth multiplier, Yosys built-in gates / sky130 Liberty cells):
all 2^wbits weight codes; floating mode over all 2^abits activations x ``--psums`` partial
sums (corner cases 0, -1, max, min, 1 first, then uniform: ``check.sample_psums``); energy over ``--vectors`` uniform random (a, p) vectors. With OpenSTA and the
Liberty file present, the sky130 static delays of 16 codes are checked against OpenSTA.

    python benchmarks/bench_characterize.py [--threads 1] [--psums 64] [--vectors 4096]

Prints a markdown table (paste into benchmarks/characterize.md). Times are wall clock per
phase; "CPU s" is the process CPU time of timing + energy (= the wall time on an otherwise
idle machine with --threads 1, a fair figure when other jobs share the cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from halo_opt.hardware.check import sample_psums
from halo_opt.hardware.delay import BuiltinDelay, LibertyDelay
from halo_opt.hardware.energy import draw_activations, leakage_w, mac_energy, net_caps_ff
from halo_opt.hardware.liberty import read_liberty
from halo_opt.hardware.opensta import opensta_static_delays, sta_path, weight_cases
from halo_opt.hardware.timing import floating_delays, static_timing
from halo_opt.hardware.verilog import MacSpec
from halo_opt.hardware.yosys import synthesize_mac

SKY130 = Path(__file__).resolve().parents[2] / "shared/liberty/sky130hd_tt.lib.gz"
STA_CODES = [0, 1, -1, 127, -128, 2, 3, 5, -3, 33, 64, -64, 85, -86, 100, -100]


def spread(d: np.ndarray, codes: np.ndarray) -> str:
    nz = d[codes != 0]
    return f"{nz.min():.0f} / {nz.max():.0f} ({nz.max() / nz.min():.2f}x)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--psums", type=int, default=64)
    ap.add_argument("--vectors", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}; threads={args.threads}, psums={args.psums}, energy vectors={args.vectors}")
    print("| design | gates | synth s | static s | floating s | energy s | total s | CPU s | static min/max ps (nonzero codes) | floating min/max ps | energy min/max fJ | leakage µW | OpenSTA max err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    t = time.perf_counter()
    lib = read_liberty(SKY130) if SKY130.is_file() else None
    if lib is not None:
        from halo_opt.hardware.delay import fo4_ps

        print(f"Liberty parse: {time.perf_counter() - t:.2f} s, {len(lib.cells)} cells; sky130 inv_1 FO4 = {fo4_ps(lib):.1f} ps")
    for arch in ("array", "booth"):
        for use_lib in (False, True):
            if use_lib and lib is None:
                continue
            spec = MacSpec(8, 8, True, 24, arch)
            t0 = time.perf_counter()
            nl = synthesize_mac(spec, liberty=SKY130 if use_lib else None)
            t_syn = time.perf_counter() - t0
            model = LibertyDelay(lib) if use_lib else BuiltinDelay()
            codes = np.arange(-128, 128)
            rng = np.random.default_rng(args.seed)
            a_all = np.arange(-128, 128)
            p_s = sample_psums(24, True, args.psums, args.seed)  # corner cases + uniform, as `characterize`
            a_seq = draw_activations(args.vectors, 8, True, rng)
            p_seq = rng.integers(-(1 << 23), 1 << 23, args.vectors)
            c1 = time.process_time()
            t1 = time.perf_counter()
            st = static_timing(nl, model, codes)
            t2 = time.perf_counter()
            fl = floating_delays(nl, model, codes, a_all, p_s, static=st, threads=args.threads)
            t3 = time.perf_counter()
            e = mac_energy(nl, net_caps_ff(nl, lib if use_lib else None), codes, a_seq, p_seq, lib.voltage if use_lib else 1.0)
            t4 = time.perf_counter()
            cpu = time.process_time() - c1
            assert (fl <= st.delay_ps + 1e-9).all()
            err = "-"
            if use_lib and sta_path():
                ours = static_timing(nl, model, STA_CODES, logic="kleene").delay_ps
                ref = np.array(opensta_static_delays(nl.meta["verilog_path"], SKY130, weight_cases(STA_CODES, 8)))
                exact = static_timing(nl, model, STA_CODES).delay_ps
                err = f"{np.max(np.abs(ours - ref) / ref) * 100:.2f}% (exact logic: {np.max(np.abs(exact - ref) / ref) * 100:.1f}%)"
            name = f"{arch}, {'sky130' if use_lib else 'built-in'}"
            print(f"| {name} | {len(nl.gates)} | {t_syn:.1f} | {t2 - t1:.2f} | {t3 - t2:.2f} | {t4 - t3:.2f} | {t4 - t1:.2f} | {cpu:.2f} | "
                  f"{spread(st.delay_ps, codes)} | {spread(fl, codes)} | {e.min():.0f} / {e.max():.0f} | "
                  f"{leakage_w(nl, lib if use_lib else None) * 1e6:.3f} | {err} |")


if __name__ == "__main__":
    main()
