"""`halo-opt demo`: the whole pipeline on the embedded default model."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="run folder (resumes finished stages)"),
    sequences: int = typer.Option(64, "--sequences", help="calibration sequences"),
    seq_len: int = typer.Option(128, "--seq-len", help="tokens per sequence"),
    heldout: int = typer.Option(32, "--heldout", help="held-out sequences for evaluation"),
    tile: int = typer.Option(64, "--tile", help="square weight tile (rows = cols); the array folds at this size"),
    points: int = typer.Option(8, "--points", help="budgets per Pareto sweep"),
    time_limit: float = typer.Option(10.0, "--time-limit", help="solver time limit per solve, s"),
    seed: int = typer.Option(0, "--seed", help="seed for calibration sampling and solvers"),
    workers: int = typer.Option(2, "--workers", help="threads / processes"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Characterize → calibrate MiniLM → costs → plan (performance, energy, balanced, baselines) →
    Pareto → execute → report.md.

    Example: halo-opt demo --out runs/demo
    """
    from rich.console import Console

    from ..demo import DemoConfig, run_demo
    from ..errors import UserError
    from ..report.demo_report import _f

    if min(sequences, seq_len, heldout, tile, points, workers) < 1 or time_limit <= 0:
        raise UserError("--sequences, --seq-len, --heldout, --tile, --points, --workers must be >= 1 and --time-limit > 0")
    console = Console(stderr=True)
    cfg = DemoConfig(out=out, sequences=sequences, seq_len=seq_len, heldout=heldout, tile=tile, pareto_points=points,
                     time_limit=time_limit, seed=seed, workers=workers)
    res = run_demo(cfg, progress=progress, log=lambda m: console.print(f"[bold cyan]{m}[/]"))
    from rich.table import Table

    metrics = sorted({k[5:] for r in res.rows for k in r if k.startswith("meas_")})[:2]
    t = Table("scenario", "solver", "status", "ε", "speedup", "energy", *[m.replace("_", " ") for m in metrics],
              title="halo-opt demo: plans vs the INT8 baseline (predicted speed/energy, measured accuracy)")
    for r in res.rows:
        t.add_row(r["scenario"], r["solver"], r.get("status", ""), _f(r.get("pred_error_rel"), ".1e"),
                  _f(r.get("speedup"), ".3f"), _f(-100 * r["energy_saving"], "+.1f") + "%" if r.get("energy_saving") is not None else "–",
                  *[_f(r.get(f"meas_{m}"), ".4f") for m in metrics])
    Console(width=max(Console().width, 110)).print(t)
    console.print(f"report: {res.report}  (total {sum(s.seconds for s in res.stages):.0f} s)")
