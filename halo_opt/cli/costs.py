"""`halo-opt costs`: per tile × codebook errors and per layer × level latency (contract §4)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from . import app


def parse_tile(text: str) -> tuple[int, int]:
    """``128`` -> (128, 128); ``128x64`` -> (128 output rows, 64 input columns)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise UserError(f"--tile {text!r} is not a size; use e.g. 128 or 128x64 (output rows x input columns)")
    return parts[0], parts[1]


@app.command("costs")
def costs_cmd(
    calib: Path = typer.Option(..., "--calib", help="calibration folder (halo-opt calibrate)"),
    profile: List[Path] = typer.Option(..., "--profile", help="MAC profile folder (with codebooks.json unless --codebooks); "
                                       "repeat it to put several PEs' codebooks (e.g. INT8 and FP8) into one problem"),
    out: Path = typer.Option(..., "--out", help="cost-table folder to write"),
    accelerator: str = typer.Option("tpu_like", "--accelerator", help="tpu_like, gpu_like or a .toml path"),
    tile: Optional[str] = typer.Option(None, "--tile", help="tile size, e.g. 128 or 128x64 (default: the accelerator's)"),
    workload: str = typer.Option("prefill", "--workload", help="prefill, decode, or a named workload: prefill-b1 (batch-1 prefill), "
                                 "prefill-b64 (compute-bound), decode-b1"),
    batch: Optional[int] = typer.Option(None, "--batch", help="sequences per pass (default 1, or the named workload's)"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="prompt length (prefill; default 128)"),
    codebooks: Optional[List[Path]] = typer.Option(None, "--codebooks", help="codebooks.json (default: PROFILE/codebooks.json); one per --profile"),
    damp: float = typer.Option(0.01, "--damp", help="relative damping of H (λ = damp·mean diag H); 0 = exact H"),
    voltage_law: Optional[str] = typer.Option(None, "--voltage-law", help="alpha-power law name (default: the accelerator's, matched to the profile's v0)"),
    grid: int = typer.Option(15, "--grid", help="scale grid points per row"),
    exact_search: bool = typer.Option(False, "--exact-search", help="search scales in float64 (default: float32 search, float64 errors)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:i]"),
    error_model: str = typer.Option("auto", "--error-model", help="auto (fisher when the calibration has Fisher statistics, else local), "
                                    "local (layer-local tr(ΔW H ΔWᵀ)) or fisher (loss-aware, output channels weighted by the loss's sensitivity)"),
    fp_scale: str = typer.Option("mx", "--fp-scale", help="scales of FP codebooks: mx (E8M0 per row and 32 input columns) or row (per row and tile)"),
    mx_rule: str = typer.Option("search", "--mx-rule", help="E8M0 scale choice: search (OCP rule ×{1,2,½}, least Hessian error) or ocp (the OCP rule)"),
    clock_basis: str = typer.Option("absolute", "--clock-basis", help="several --profile: absolute (each codebook's own ps) or "
                                    "anchored (each profile scaled to run its full grid at the first profile's nominal clock)"),
    save_scales: bool = typer.Option(False, "--save-scales", help="also keep every layer's chosen scales (scales.safetensors, "
                                     "float64, codebooks x output rows x column blocks): RTN in execute, tune and study then reuses "
                                     "them instead of searching (MX block scales excepted); size 8 B x codebooks x params / tile width"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Build the cost tables the planner reads: error per tile × codebook, latency and energy per layer × DVFS level.

    Example: halo-opt costs --calib runs/calib --profile runs/mac --accelerator tpu_like --tile 64 --out runs/costs
    """
    from ..accelerators import workload as named_workload
    from ..calibration.hessian import DampingWarning
    from ..costs import build_costs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DampingWarning)
        build_costs(calib, profile, out, accelerator, parse_tile(tile) if tile else None, named_workload(workload, batch, seq_len),
                    codebooks or None, damp=damp, voltage_law=voltage_law, n_grid=grid, fast=not exact_search, device=device,
                    progress=progress, error_model=error_model, fp_scale=fp_scale, mx_rule=mx_rule,
                    clock_basis=clock_basis, save_scales=save_scales)
    for w in caught:
        if issubclass(w.category, DampingWarning):
            typer.echo(f"note: {w.message}", err=True)
    from ..execute.inputs import load_costs
    from ..execute.validate import baseline_cost
    from ..report.style import uj, us

    c = load_costs(out)
    b = baseline_cost(c, "int8")
    share = c.meta.get("compute_bound_share") or {}
    fold = f", per fold {share['fold']:.2f} (fold granularity available)" if share.get("fold") is not None else ""
    clk = c.meta.get("clock") or {}
    typer.echo(f"cost tables: {len(c.tiles)} tiles in {len(c.layers)} layers × {len(c.codebooks)} codebooks × {len(c.levels)} DVFS levels; "
               f"baseline (full grid at level {b['level']}, {clk.get('f0_hz', 0) / 1e6:.0f} MHz, clock anchor {clk.get('anchor')}): "
               f"latency {us(b['latency_s'])}, energy {uj(b['energy_j'])} per pass; workload {c.meta['workload'].get('name')}, "
               f"compute-bound share of the latency per layer {share.get('layer', float('nan')):.2f}{fold} -> {out}")
