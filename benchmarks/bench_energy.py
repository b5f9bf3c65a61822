"""Benchmark: per-code MAC energy from the Liberty library, before vs after internal power.

For 8x8 signed MACs (24-bit accumulator; array and Booth multipliers) mapped to each Liberty
library in ``../shared/liberty`` that is present, over ``--vectors`` uniform random (a, p)
vectors per code (seed 0, as ``characterize``):

* **before**: net switching ½·C·V² only, at the voltage law's v0 (what ``characterize`` did:
  1.8 V for sky130, 1.0 V "generic" for every other library);
* **after**: switching at the library's supply + Liberty ``internal_power`` (slews from static
  case analysis), and the mean state-dependent leakage per code.

    python benchmarks/bench_energy.py [--vectors 4096] [--shared ../shared/liberty]

Prints a markdown table (benchmarks/characterize.md, "Energy from the library").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from halo_opt.hardware.check import code_range
from halo_opt.hardware.delay import LibertyDelay
from halo_opt.hardware.energy import draw_activations, mac_energy, mac_energy_breakdown, net_caps_ff
from halo_opt.hardware.liberty import read_liberty
from halo_opt.hardware.liberty_power import read_liberty_power
from halo_opt.hardware.timing import static_timing
from halo_opt.hardware.verilog import MacSpec
from halo_opt.hardware.yosys import synthesize_mac

SHARED = Path(__file__).resolve().parents[2] / "shared/liberty"
LIBS = {"sky130 hd tt": ("sky130hd_tt.lib.gz", 1.8), "SG13G2 typ": ("sg13g2_stdcell_typ_1p20V_25C.lib.gz", 1.0)}


def rng_fj(e: np.ndarray) -> str:
    return f"{e.min():.0f}–{e.max():.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=4096)
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder holding the Liberty files")
    args = ap.parse_args()
    print("| library | MAC | gates | before: V, fJ/MAC min–max (mean) | after: V, fJ/MAC min–max (mean) | after, nonzero codes | switching / internal share | leakage nW min–max | energy CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for lname, (fname, law_v0) in LIBS.items():
        path = args.shared / fname
        if not path.is_file():
            continue
        lib, power = read_liberty(path), read_liberty_power(path)
        for arch in ("array", "booth"):
            net = synthesize_mac(MacSpec(8, 8, True, 24, arch), path)
            codes = code_range(8, True)
            rng = np.random.default_rng(0)
            a = draw_activations(args.vectors, 8, True, rng)
            p = rng.integers(-(1 << 23), 1 << 23, size=args.vectors)
            caps = net_caps_ff(net, lib)
            before = mac_energy(net, caps, codes, a, p, law_v0)
            st = static_timing(net, LibertyDelay(lib), codes)
            t = time.process_time()
            eb = mac_energy_breakdown(net, codes, a, p, caps_ff=caps, v0=law_v0, power=power, slew_ps=st.slew_ps)
            cpu = time.process_time() - t
            e, nz = eb.total_fj, codes != 0
            sw = eb.switch_fj.sum() / e.sum()
            print(f"| {lname} | {arch} | {len(net.gates)} | {law_v0:g} V, {rng_fj(before)} ({before.mean():.0f}) | "
                  f"{eb.voltage:g} V ({eb.voltage_source}), {rng_fj(e)} ({e.mean():.0f}) | {rng_fj(e[nz])} | "
                  f"{sw:.0%} / {1 - sw:.0%} | {eb.leakage_nw.min():.3g}–{eb.leakage_nw.max():.3g} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
