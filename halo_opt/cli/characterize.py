"""`halo-opt characterize`: MAC netlist -> per-code delay/energy profile, codebooks, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command()
def characterize(
    wbits: Optional[int] = typer.Option(None, help="weight bits (2..8; default 8, or the --wformat's width)"),
    abits: Optional[int] = typer.Option(None, help="activation bits (2..8; default 8, or the --aformat's width)"),
    signed: bool = typer.Option(True, "--signed/--unsigned", help="two's complement operands"),
    acc: Optional[int] = typer.Option(None, help="accumulator (partial sum) width in bits (default 24; FP: the aligned product's width + 8)"),
    wformat: Optional[str] = typer.Option(None, help="weight format: int8 (default: the integer format of --wbits/--signed), fp8_e4m3, fp8_e5m2 or fp4_e2m1 (codes = bit patterns, NaN/Inf excluded)"),
    aformat: Optional[str] = typer.Option(None, help="activation format of an FP MAC: fp8_e4m3 (default), fp8_e5m2 or fp4_e2m1; the product is aligned exactly into a fixed-point accumulator"),
    arch: str = typer.Option("array", help="multiplier: array (Yosys default), booth (radix-4, synth -booth), wallace or dadda (structural trees of full/half adders)"),
    pipeline: str = typer.Option("combinational", help="combinational (one stage y = p + a*w) or registered (product registered: multiplier and accumulate stages timed separately; the clock is the slower)"),
    accumulate: str = typer.Option("cpa", help="cpa (carry-propagate adder) or csa (carry-save pair + 3:2 row per MAC, resolved once per column outside the per-MAC path)"),
    liberty: Optional[list[Path]] = typer.Option(None, help="Liberty file (.lib or .lib.gz) to map to and time with NLDM, repeatable for a library in several files (ASAP7); default: built-in gate delays"),
    netlist: Optional[Path] = typer.Option(None, help="your own netlist instead of synthesis: Yosys JSON, or structural Verilog (+ --liberty)"),
    psums: int = typer.Option(64, help="sampled partial sums for floating-mode timing"),
    energy_vectors: int = typer.Option(4096, help="length of the random activation stream for toggle energy"),
    timing: str = typer.Option("static", help="delay codebooks use: static (safe case-analysis bound) or float (sensitised)"),
    seed: int = typer.Option(0, help="seed for sampled partial sums and activation streams"),
    workers: int = typer.Option(1, help="threads for floating-mode timing (numpy calls are short: 2 threads gain <10%)"),
    out: Path = typer.Option(Path("runs/characterize"), help="output folder (profile.csv/.parquet/.json, codebooks.json, profile.png)"),
) -> None:
    """Measure per-weight-code delay and energy of a MAC (y = p + a*w) and build codebooks.

    Example: halo-opt characterize --wbits 8 --abits 8 --signed --acc 24 --arch booth --liberty sky130hd_tt.lib.gz --out runs/booth
    (a pipelined PE: --arch wallace --pipeline registered --accumulate csa; an FP8 MAC: --wformat fp8_e4m3)
    """
    from rich.console import Console

    from ..hardware.characterize import CharacterizeConfig, characterize as run, write_characterization
    from ..hardware.verilog import mac_spec

    liberty = (liberty[0] if len(liberty) == 1 else list(liberty)) if liberty else None
    cfg = CharacterizeConfig(mac_spec(wbits, abits, signed, acc, arch, pipeline, accumulate, wformat, aformat), liberty, netlist, psums, energy_vectors,
                             timing=timing, seed=seed, threads=workers)
    if timing not in ("static", "float"):
        from ..errors import UserError

        raise UserError(f"--timing {timing!r} is not one of static, float")
    console = Console(stderr=True)
    with console.status(f"characterizing {cfg.spec.name} ({'Liberty ' + ', '.join(p.name for p in ([liberty] if isinstance(liberty, Path) else liberty)) if liberty else 'built-in delays'})"):
        profile, books, _ = run(cfg, progress=False)
    from ..report.profile_plot import render_profile

    write_characterization(out, profile, books)
    render_profile(out)
    print_summary(profile, books, console)
    console.print(f"wrote {out}/profile.csv, codebooks.json, profile.png")


def print_summary(profile, books, console) -> None:
    """Delay spread and the codebook ladder as a table."""
    from rich.table import Table

    nz = profile.values != 0
    s, f = profile.delay("static"), profile.delay("float")
    console.print(f"[bold]{profile.meta.get('design') or profile.meta.get('arch')} MAC, {profile.meta.get('library')}, {profile.meta.get('gates')} gates[/]: "
                  f"static delay {s[nz].min():.0f}..{s[nz].max():.0f} ps (spread {s[nz].max() / s[nz].min():.2f}x), "
                  f"floating {f[nz].min():.0f}..{f[nz].max():.0f} ps (spread {f[nz].max() / f[nz].min():.2f}x)")
    for name, st in (profile.meta.get("stages") or {}).items():
        if len(profile.meta["stages"]) > 1:
            kind = "weight-dependent, max over codes" if st["weight_dependent"] else ("once per column, not in the cycle" if st["per"] == "column" else "weight-independent floor")
            console.print(f"  stage {name}: {st['gates']} gates, static {st['static_ps']:.0f} ps, floating {st['float_ps']:.0f} ps ({kind})")
    from ..hardware.codebooks import gaussian_mse

    wide = profile.format.is_float
    t = Table("codebook", "family", "codes", "delay (ps)", "energy (fJ)", "speed vs full", "Gaussian MSE vs full")
    full, mse0 = books[0].delay_ps, gaussian_mse(books[0].values, wide=wide)
    for cb in books:
        t.add_row(cb.name, cb.family, str(cb.size), f"{cb.delay_ps:.0f}", f"{cb.energy_fj:.1f}", f"{full / cb.delay_ps:.2f}x",
                  f"{gaussian_mse(cb.values, wide=wide) / mse0:.1f}x")
    console.print(t)
