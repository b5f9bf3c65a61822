"""Design-space sweep: every PE design of ``MacSpec`` on one library, compared with HALO's table.

For each design (multiplier x pipelining x accumulation at 8x8 signed, plus 4-bit-weight and
unsigned variants): ``halo_opt.hardware.characterize`` (synthesis + exhaustive check + static
and floating timing + energy, the CLI defaults: 64 partial sums, 4096 energy vectors), then

* nonzero-code spread (max/min) of the per-code delay, static and floating;
* the fast8 / fast16 codebooks' delay (``build_codebooks``) and their speed vs the full grid;
* the physical-bound speedup on MiniLM: every layer's tiles on the fastest codebook at the
  fastest DVFS level that codebook meets (``tpu_like`` accelerator and DVFS table, anchored at
  the design's full-grid delay; prefill, batch 1, 128 tokens), computed directly from the
  accelerator's per-layer latency (``Accelerator.latency``) over MiniLM's 36 planned layers —
  no calibration needed, since accuracy is ignored by definition of the bound;
* the comparison with HALO's per-code table (``../shared/anchors/halo_per_code.csv``, skipped
  when absent): Spearman of per-code delay (a registered design by its multiplier stage),
  shared codes among the fastest 8 and 16.

    python benchmarks/bench_design_space.py --out benchmarks/results/design_space/builtin
    python benchmarks/bench_design_space.py --liberty ../shared/liberty/sky130hd_tt.lib.gz \
        --out benchmarks/results/design_space/sky130
    python benchmarks/bench_design_space.py --fp --out benchmarks/results/design_space/fp_builtin

``--fp`` sweeps the floating-point MACs instead (``MacSpec.wformat``): FP8 E4M3 and FP4 E2M1
weights x FP8 E4M3 activations, exact product aligned into a fixed-point accumulator
(default width: product + 8 bits), array and booth significand multipliers, combinational and
registered (HALO's integer table is not compared with them).

Writes ``designs.csv``, ``table.md``, ``per_code.csv`` and ``design_space.png`` into ``--out``
and prints the markdown table with the wall time, process CPU time and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from halo_opt.accelerators import LayerShape, Workload, load_accelerator
from halo_opt.hardware.characterize import CharacterizeConfig, characterize
from halo_opt.hardware.codebooks import Codebook, build_codebooks
from halo_opt.hardware.dvfs import load_dvfs, load_voltage_law
from halo_opt.hardware.profile import MacProfile, compare_profiles
from halo_opt.hardware.verilog import ARCHS, MacSpec, mac_spec

REPO = Path(__file__).resolve().parents[1]
SHARED = next((d for d in (REPO.parent / "shared", Path("/work/shared")) if d.is_dir()), REPO.parent / "shared")  # beside the clone; dev-box fallback
HALO = SHARED / "anchors/halo_per_code.csv"
MAIN = [("combinational", "cpa"), ("combinational", "csa"), ("registered", "cpa"), ("registered", "csa")]


def fp_designs(quick: bool = False) -> list[MacSpec]:
    """FP8 E4M3 and FP4 E2M1 weights x FP8 E4M3 activations: array / booth significand
    multipliers, combinational and registered, and FP4 registered carry-save (the
    multiplier-stage-limited design; ``quick``: combinational array only)."""
    pipes = ("combinational",) if quick else ("combinational", "registered")
    archs = ("array",) if quick else ("array", "booth")
    out = [mac_spec(wformat=f, arch=a, pipeline=p) for f in ("fp8_e4m3", "fp4_e2m1") for a in archs for p in pipes]
    if not quick:  # FP4's 23-bit product fits a carry-save pair (FP8's 37 bits do not: csa <= 31)
        out += [mac_spec(wformat="fp4_e2m1", arch=a, pipeline="registered", accumulate="csa") for a in archs]
    return out


def designs(quick: bool = False, fp: bool = False) -> list[MacSpec]:
    """The sweep (``fp``: :func:`fp_designs` instead): 4 multipliers x 4 (pipelining, accumulation) at 8x8 signed, acc 24; then per
    multiplier a 4-bit-weight (w4 x a8) signed and an unsigned 8x8 variant, both registered
    carry-save (the multiplier-stage-limited design) and the 4-bit one also combinational."""
    if fp:
        return fp_designs(quick)
    out = [MacSpec(8, 8, True, 24, arch, pipe, accu) for arch in ARCHS for pipe, accu in MAIN]
    if not quick:
        for arch in ARCHS:
            out += [MacSpec(4, 8, True, 24, arch), MacSpec(4, 8, True, 24, arch, "registered", "csa"),
                    MacSpec(8, 8, False, 24, arch, "registered", "csa")]
    return out


def minilm_shapes(workload: Workload) -> list[LayerShape]:
    """MiniLM's planned linear layers (the embedded model) as accelerator layer shapes."""
    from halo_opt.calibration.models import load_model

    return [LayerShape(r["name"], r["in_features"], r["out_features"], workload.tokens) for r in load_model("minilm").layer_table()]


def physical_bound(profile: MacProfile, books: list[Codebook], shapes: list[LayerShape], accelerator: str = "tpu_like") -> dict:
    """Speedup of every layer on the fastest codebook at its fastest level over the full grid at nominal."""
    acc = load_accelerator(accelerator)
    full = next(b for b in books if b.name == "full")
    table = load_dvfs(acc.dvfs, full.delay_ps, load_voltage_law(profile.meta.get("voltage_law", "generic")))
    fast = min(books, key=lambda b: (b.delay_ps, -b.size))
    level = table.fastest_level(fast.delay_ps)
    base = sum(acc.latency(s, table.level("nominal"))[0] for s in shapes)
    best = sum(acc.latency(s, level)[0] for s in shapes)
    return {"bound_speedup": base / best, "bound_book": fast.name, "bound_level": level.name,
            "bound_clock_ratio": full.delay_ps / fast.delay_ps}


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (the Yosys runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_one(spec: MacSpec, liberty: Path | None, shapes, halo: MacProfile | None, threads: int) -> tuple[dict, pd.DataFrame]:
    t0, c0 = time.perf_counter(), cpu_s()
    prof, books, _ = characterize(CharacterizeConfig(spec, liberty, threads=threads))
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    nz = prof.values != 0  # FP: both zeros
    s, f = prof.delay("static")[nz], prof.delay("float")[nz]
    by = {b.name: b for b in books}
    full = by["full"].delay_ps
    st = prof.meta["stages"]
    row = {"design": spec.name, "arch": spec.arch, "pipeline": spec.pipeline, "accumulate": spec.accumulate,
           "wbits": spec.wbits, "abits": spec.abits, "signed": spec.signed, "wformat": spec.wfmt.name, "aformat": spec.afmt.name,
           "acc": spec.acc, "gates": prof.meta["gates"],
           "full_ps": full, "spread_static": s.max() / s.min(), "spread_float": f.max() / f.min(),
           "floor_ps": st["acc"]["static_ps"] if "acc" in st else None,
           "resolve_ps": st["resolve"]["static_ps"] if "resolve" in st else None,
           "fast8_ps": by["fast8"].delay_ps if "fast8" in by else None,
           "fast16_ps": by["fast16"].delay_ps if "fast16" in by else None,
           "energy_min_fj": prof.energy.min(), "energy_max_fj": prof.energy.max(),
           "leakage_w": prof.meta["leakage_w"], "wall_s": wall, "cpu_s": cpu}
    if shapes is not None:
        row |= physical_bound(prof, books, shapes)
    if halo is not None and spec.wbits == 8 and not spec.is_float:
        row |= {f"halo_{k}": v for k, v in compare_profiles(prof, halo).items() if k not in ("codes", "ref_spread")}
    t = prof.table.assign(design=spec.name)
    return row, t


def halo_row(halo: MacProfile, shapes) -> tuple[dict, pd.DataFrame]:
    books = build_codebooks(halo)
    by = {b.name: b for b in books}
    nz = halo.codes != 0
    d = halo.delay("static")[nz]
    row = {"design": "HALO table (published, per-code max clock)", "arch": "?", "pipeline": "?", "accumulate": "?",
           "wbits": 8, "abits": None, "signed": True, "gates": None, "full_ps": by["full"].delay_ps,
           "spread_static": d.max() / d.min(), "spread_float": None, "fast8_ps": by["fast8"].delay_ps,
           "fast16_ps": by["fast16"].delay_ps, "halo_spearman": 1.0, "halo_overlap_8": 8, "halo_overlap_16": 16}
    if shapes is not None:
        halo.meta.setdefault("voltage_law", "generic")
        row |= physical_bound(halo, books, shapes)
    return row, halo.table.assign(design="halo")


def num(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))


def fmt(v, spec: str = ".0f") -> str:
    return format(v, spec) if num(v) else "–"


def stage_spreads(per_code: pd.DataFrame | None) -> dict[str, float]:
    """Per registered design: max/min static delay of its weight-dependent (multiplier) stage
    over the codes of nonzero value (``per_code`` from a sweep; FP rows carry ``value``)."""
    if per_code is None or "stage_static_ps" not in per_code:
        return {}
    out = {}
    for d, t in per_code[per_code["stage_static_ps"].notna()].groupby("design"):
        v = t["value"] if "value" in t and t["value"].notna().all() else t["code"]
        x = t["stage_static_ps"][v != 0]
        out[d] = float(x.max() / x.min())
    return out


def markdown(df: pd.DataFrame, per_code: pd.DataFrame | None = None) -> str:
    """The table; a registered FP design's spread cell adds its multiplier stage's static spread."""
    mul = stage_spreads(per_code)
    lines = ["| design | gates | full-grid ps | spread static / float | fast8 ps (x) | fast16 ps (x) | energy fJ | "
             "fastest book: clock ratio, MiniLM bound (book @ level) | HALO Spearman | fastest 8 / 16 shared | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in df.to_dict("records"):
        full = r["full_ps"]
        x8 = f"{fmt(r['fast8_ps'])} ({full / r['fast8_ps']:.2f}x)" if num(r.get("fast8_ps")) else "–"
        x16 = f"{fmt(r['fast16_ps'])} ({full / r['fast16_ps']:.2f}x)" if num(r.get("fast16_ps")) else "–"
        bound = (f"{r['bound_clock_ratio']:.2f}x, {r['bound_speedup']:.2f}x ({r['bound_book']} @ {r['bound_level']})"
                 if num(r.get("bound_speedup")) else "–")
        en = f"{r['energy_min_fj']:.0f}–{r['energy_max_fj']:.0f}" if num(r.get("energy_min_fj")) else "–"
        sp = f"{r['spread_static']:.2f} / {fmt(r['spread_float'], '.2f')}"
        if str(r["design"]).startswith("mac_fp") and r["design"] in mul:
            sp += f" (mul stage {mul[r['design']]:.2f})"
        halo = fmt(r.get("halo_spearman"), ".2f")
        ov = f"{int(r['halo_overlap_8'])} / {int(r['halo_overlap_16'])}" if num(r.get("halo_overlap_8")) else "–"
        lines.append(f"| {r['design']} | {fmt(r['gates'])} | {full:.0f} | {sp} | {x8} | {x16} | {en} | {bound} | {halo} | {ov} | {fmt(r.get('cpu_s'), '.1f')} |")
    return "\n".join(lines) + "\n"


def plot(per_code: pd.DataFrame, path: Path, title: str) -> None:
    """One panel per 8x8 signed design (normalised per-code delay; a registered design's
    multiplier stage), HALO's table in grey behind each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [d for d in per_code["design"].unique() if d.startswith(("mac_s8x8", "mac_fp"))]
    halo = per_code[per_code["design"] == "halo"].sort_values("code")
    cols = 4
    rows = -(-len(show) // cols)
    fp = any(d.startswith("mac_fp") for d in show)  # FP4 and FP8 codes differ in range: own x axes
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), sharex=not fp, sharey=True, squeeze=False)
    for ax, d in zip(axes.ravel(), show):
        t = per_code[per_code["design"] == d].sort_values("code")
        col = "stage_static_ps" if "stage_static_ps" in t and t["stage_static_ps"].notna().all() else "delay_static_ps"
        if len(halo):
            ax.plot(halo["code"], halo["delay_static_ps"] / halo["delay_static_ps"].max(), color="0.7", lw=0.8)
        ax.plot(t["code"], t[col] / t[col].max(), lw=0.8)
        ax.set_title(d.removeprefix("mac_s8x8_acc24_").removeprefix("mac_") + (" (mul stage)" if col.startswith("stage") else ""), fontsize=8)
        ax.set_ylim(0, 1.05)
    for ax in axes.ravel()[len(show):]:
        ax.axis("off")
    fig.suptitle(f"{title}: per-code static delay / max (grey: HALO table, 1/max clock)", fontsize=10)
    fig.supxlabel("weight code" + (" (FP: the bit pattern; ±0 at 0 and the sign bit alone)" if fp else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_shard(args, k: int, n: int) -> None:
    """Designs ``k::n`` of the sweep; rows to ``rows-<k>.jsonl``, per-code tables to ``per_code-<k>.csv``."""
    raw = json.loads((args.out / "minilm_shapes.json").read_text()) if (args.out / "minilm_shapes.json").is_file() else None
    shapes = [LayerShape(**r) for r in raw] if raw else None
    halo = MacProfile.load(HALO) if HALO.is_file() else None
    rows, tables = [], []
    for spec in designs(args.quick, args.fp)[k::n]:
        r, t = run_one(spec, args.liberty, shapes, halo, args.threads)
        rows.append(r)
        tables.append(t)
        print(f"{spec.name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, spread {r['spread_static']:.2f}x", flush=True)
    (args.out / f"rows-{k}.jsonl").write_text("".join(json.dumps(r, default=float) + "\n" for r in rows))
    pd.concat(tables, ignore_index=True).to_csv(args.out / f"per_code-{k}.csv", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--liberty", type=Path, default=None, help="Liberty file (default: built-in gate delays)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (designs split round-robin)")
    ap.add_argument("--threads", type=int, default=1, help="floating-mode threads per worker")
    ap.add_argument("--quick", action="store_true", help="only the 16 8x8 signed designs (with --fp: the 2 combinational array FP designs)")
    ap.add_argument("--fp", action="store_true", help="the floating-point MACs (FP8 E4M3, FP4 E2M1 weights x FP8 E4M3) instead of the integer ones")
    ap.add_argument("--no-minilm", action="store_true", help="skip the MiniLM physical bound (no torch import)")
    ap.add_argument("--render-only", action="store_true", help="rewrite table.md and the plot from --out's designs.csv, per_code.csv, run.json")
    ap.add_argument("--shard", default=None, help=argparse.SUPPRESS)  # k/n: internal, one worker
    args = ap.parse_args()
    if args.render_only:
        return render(args.out, pd.read_csv(args.out / "designs.csv"), pd.read_csv(args.out / "per_code.csv"),
                      json.loads((args.out / "run.json").read_text()))
    if args.shard:
        k, n = map(int, args.shard.split("/"))
        return run_shard(args, k, n)
    t0, c0 = time.perf_counter(), cpu_s()
    load0 = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    for f in list(args.out.glob("rows-*.jsonl")) + list(args.out.glob("per_code-*.csv")) + list(args.out.glob("minilm_shapes.json")):
        f.unlink()
    shapes = None if args.no_minilm else minilm_shapes(Workload())
    if shapes is not None:
        (args.out / "minilm_shapes.json").write_text(json.dumps([vars(s) for s in shapes]))
    cmd = [sys.executable, __file__, "--out", str(args.out), "--threads", str(args.threads)]
    cmd += (["--liberty", str(args.liberty)] if args.liberty else []) + (["--quick"] if args.quick else []) + (["--fp"] if args.fp else [])
    procs = [subprocess.Popen(cmd + ["--shard", f"{k}/{args.jobs}"]) for k in range(args.jobs)]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a worker failed; see its output above")
    rows = [json.loads(line) for k in range(args.jobs) for line in (args.out / f"rows-{k}.jsonl").read_text().splitlines()]
    tables = [pd.read_csv(args.out / f"per_code-{k}.csv") for k in range(args.jobs)]
    order = {s.name: i for i, s in enumerate(designs(args.quick, args.fp))}
    rows.sort(key=lambda r: order[r["design"]])
    halo = MacProfile.load(HALO) if HALO.is_file() and not args.fp else None
    if halo is not None:
        r, t = halo_row(halo, shapes)
        rows.append(r)
        tables.append(t)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    df = pd.DataFrame(rows)
    per_code = pd.concat(tables, ignore_index=True)
    lib = args.liberty.name if args.liberty else "yosys built-in gates (logical effort, tau = 16 ps)"
    df.to_csv(args.out / "designs.csv", index=False)
    per_code.to_csv(args.out / "per_code.csv", index=False, float_format="%.3f")
    for f in list(args.out.glob("rows-*.jsonl")) + list(args.out.glob("per_code-*.csv")):
        f.unlink()
    run = {"library": lib, "designs": len(rows) - (halo is not None), "wall_s": wall, "cpu_s": cpu, "jobs": args.jobs,
           "threads": args.threads, "load_start": load0[0], "load_end": os.getloadavg()[0], "cores": os.cpu_count(),
           "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (args.out / "run.json").write_text(json.dumps(run, indent=1))
    render(args.out, df, per_code, run)


def render(out: Path, df: pd.DataFrame, per_code: pd.DataFrame, run: dict) -> None:
    """``table.md`` (run line + table) and ``design_space.png`` from a finished sweep."""
    head = (f"Library: {run['library']}. Sweep of {run['designs']} designs ({run['date']}): {run['wall_s']:.0f} s wall, "
            f"{run['cpu_s']:.0f} s CPU (all processes incl. Yosys; {run['jobs']} workers, --threads {run['threads']}), load average "
            f"{run['load_start']:.1f} at start / {run['load_end']:.1f} at end on {run['cores']} cores ({run['machine']}); "
            "synthesis from the cache where present.\n\n")
    (out / "table.md").write_text(head + markdown(df, per_code))
    plot(per_code, out / "design_space.png", f"per-code delay shape, {run['library'].split(' (')[0]}")
    print(head + markdown(df, per_code))


if __name__ == "__main__":
    main()
