"""Netlist stage speed: Yosys synthesis (first / cached), functional check, simulation.

    python benchmarks/bench_netlist.py [--liberty ../shared/liberty/sky130hd_tt.lib.gz] [--cold-wasm]

Synthesis "first" runs in a fresh temporary cache folder (HALO_OPT_CACHE); ``--cold-wasm``
also empties the YoWASP compile cache for the very first call (the one-off ~30 s wasm
compilation). Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from halo_opt.hardware.check import functional_check
from halo_opt.hardware.simulate import compile_netlist, constant_propagate, net_words, pack_bits, unpack_bits
from halo_opt.hardware.verilog import MacSpec
from halo_opt.hardware.yosys import synthesize, synthesize_mac

DEFAULT_LIB = Path(__file__).resolve().parents[2] / "shared" / "liberty" / "sky130hd_tt.lib.gz"


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--liberty", type=Path, default=DEFAULT_LIB if DEFAULT_LIB.is_file() else None)
    ap.add_argument("--cold-wasm", action="store_true")
    args = ap.parse_args()
    os.environ["HALO_OPT_CACHE"] = tempfile.mkdtemp(prefix="halo-bench-")
    if args.cold_wasm:
        os.environ["YOWASP_CACHE_DIR"] = tempfile.mkdtemp(prefix="yowasp-bench-")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load}\n")

    print("| MAC | library | gates | first synth (s) | cached (s) | check (s) | top cells |")
    print("|---|---|---|---|---|---|---|")
    libs = [None] + ([args.liberty] if args.liberty else [])
    nets = {}
    for lib in libs:
        for signed in (True, False):
            for arch in ("array", "booth"):
                spec = MacSpec(8, 8, signed, 24, arch)
                first = synthesize(spec, lib).seconds
                _, cached = timed(lambda: synthesize(spec, lib), 3)
                net = synthesize_mac(spec, lib, check=False)
                compile_netlist(net)
                _, check = timed(lambda: functional_check(net, spec), 3)
                top = ", ".join(f"{c.removeprefix('sky130_fd_sc_hd__')} {k}" for c, k in Counter(g.cell for g in net.gates).most_common(3))
                print(f"| {spec.name} | {net.meta['library']} | {len(net.gates)} | {first:.2f} | {cached:.3f} | {check:.3f} | {top} |")
                nets[(lib, spec)] = net

    spec = MacSpec(8, 8, True, 24, "array")
    net = nets[(None, spec)]
    _, t_compile = timed(lambda: compile_netlist(type(net)(**{f: getattr(net, f) for f in net.__dataclass_fields__})))
    print(f"\ncompile {spec.name} ({len(net.gates)} gates) to Python: {t_compile * 1e3:.0f} ms (once per netlist)\n")
    print("| n_words (64 vectors each) | net_words (ms) | Mvectors/s |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    for nw in (1, 16, 256, 1024, 4096):
        words = {p: rng.integers(0, 2**63, (len(v), nw), dtype=np.int64).astype(np.uint64) for p, v in net.inputs.items()}
        _, t = timed(lambda: net_words(net, words), 5)
        print(f"| {nw} | {t * 1e3:.2f} | {nw * 64 / t / 1e6:.1f} |")

    codes = range(-128, 128)
    _, t = timed(lambda: [constant_propagate(net, {n: (c >> k) & 1 for k, n in enumerate(net.inputs["w"])}) for c in codes])
    print(f"\nconstant_propagate, all 256 weight codes of {spec.name}: {t:.2f} s ({t / 256 * 1e3:.1f} ms per code)")
    v = rng.integers(-(2**23), 2**23, 1 << 20)
    w, tp = timed(lambda: pack_bits(v, 24), 3)
    _, tu = timed(lambda: unpack_bits(w, v.size, signed=True), 3)
    print(f"pack_bits / unpack_bits, 2^20 values x 24 bits: {tp * 1e3:.0f} ms / {tu * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
