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
    time_limit: float = typer.Option(2.0, "--time-limit", help="solver time limit per plan, s (Pareto points: half)"),
    seed: int = typer.Option(0, "--seed", help="seed for calibration sampling and solvers"),
    workers: int = typer.Option(2, "--workers", help="threads / processes"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Characterize → calibrate MiniLM → costs → plan (performance, energy, balanced, baselines) →
    Pareto → execute → report.md.

    Example: halo-opt demo --out runs/demo
    """
    from rich.console import Console
    from rich.table import Table

    from ..demo import DemoConfig, run_demo
    from ..errors import UserError
    from ..execute.inputs import load_costs
    from ..execute.validate import baseline_cost
    from ..progress import logger
    from ..report.demo_report import summarise
    from ..report.style import f, saving, speedup, uj, us

    if min(sequences, seq_len, heldout, tile, points, workers) < 1 or time_limit <= 0:
        raise UserError("--sequences, --seq-len, --heldout, --tile, --points, --workers must be >= 1 and --time-limit > 0")
    console = Console(stderr=True)
    cfg = DemoConfig(out=out, sequences=sequences, seq_len=seq_len, heldout=heldout, tile=tile, pareto_points=points,
                     time_limit=time_limit, seed=seed, workers=workers)
    res = run_demo(cfg, progress=progress, log=logger(console))
    base = baseline_cost(load_costs(out / "costs"), "int8")
    rows = summarise(res.rows, base)
    metrics = sorted({k[5:] for r in rows for k in r if k.startswith("meas_")})[:2]
    t = Table("goal", "solver", "status", "error used ε", "latency", "speed vs INT8", "energy", "energy vs INT8",
              *[m.replace("_", " ") for m in metrics],
              title=f"halo-opt demo: plans vs the INT8 baseline ({us(base['latency_s'])}, {uj(base['energy_j'])} per pass; "
                    "predicted cost, measured accuracy)")
    for r in rows:
        t.add_row(r["scenario"], r["solver"], r.get("status", ""), f(r.get("pred_error_rel"), ".2e"), us(r.get("pred_latency_s")),
                  speedup(r.get("speedup")), uj(r.get("pred_energy_j")), saving(r.get("energy_saving")),
                  *[f(r.get(f"meas_{m}"), ".4f") for m in metrics])
    Console(width=max(Console().width, 200)).print(t)  # a log (no TTY) is 80 wide: wide enough not to wrap
    total = sum(s.rerun_seconds for s in res.stages)
    console.print(f"report: {res.report}  (this run {total:.0f} s; re-render with `halo-opt report {out}`)")
