"""Benchmark: static case-analysis timing vs OpenSTA on all 256 codes, three libraries.

For sky130 hd tt, IHP SG13G2 typ 1.20 V and ASAP7 RVT TT (its four Liberty files together):
synthesize the 8x8 signed acc24 array and Booth MACs (cached), time all 256 weight codes with
OpenSTA (``set_case_analysis`` on ``w``, one ``sta`` session per netlist) and with
``static_timing`` in the default mode (``logic="kleene"``) and in ``logic="exact"``.

    python benchmarks/bench_opensta.py

Prints a markdown table (paste into benchmarks/characterize.md). Needs ``sta`` and
``../shared/liberty``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from halo_opt.hardware.delay import LibertyDelay
from halo_opt.hardware.liberty import read_liberty
from halo_opt.hardware.opensta import opensta_static_delays, weight_cases
from halo_opt.hardware.timing import static_timing
from halo_opt.hardware.verilog import MacSpec
from halo_opt.hardware.yosys import synthesize_mac

SHARED = Path(__file__).resolve().parents[2] / "shared/liberty"  # the open libraries beside the clone (REPO/../shared)
LIBS = {"sky130 hd tt": SHARED / "sky130hd_tt.lib.gz",
        "SG13G2 typ 1.20 V": SHARED / "sg13g2_stdcell_typ_1p20V_25C.lib.gz",
        "ASAP7 RVT TT (4 files)": sorted((SHARED / "asap7").glob("*.lib.gz"))}


def main() -> None:
    codes = np.arange(-128, 128)
    print("| library | arch | gates | OpenSTA s (256 codes) | ours s | static ps (min-max) | max abs rel diff, default | at code | max abs rel diff, exact | codes > 0.1 %, exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, lib in LIBS.items():
        model = LibertyDelay(read_liberty(lib))
        for arch in ("array", "booth"):
            net = synthesize_mac(MacSpec(8, 8, True, 24, arch), liberty=lib)
            t0 = time.perf_counter()
            ref = np.array(opensta_static_delays(net.meta["verilog_path"], lib, weight_cases(codes, 8)))
            t1 = time.perf_counter()
            ours = static_timing(net, model, codes).delay_ps
            t2 = time.perf_counter()
            exact = static_timing(net, model, codes, logic="exact").delay_ps
            rel, rel_x = np.abs(ours - ref) / ref, np.abs(exact - ref) / ref
            w = int(np.argmax(rel))
            print(f"| {name} | {arch} | {len(net.gates)} | {t1 - t0:.1f} | {t2 - t1:.2f} | {ref.min():.0f}-{ref.max():.0f} | "
                  f"{rel.max():.1e} | {codes[w]} | {rel_x.max() * 100:.2f} % | {(rel_x > 1e-3).sum()} |", flush=True)


if __name__ == "__main__":
    main()
