"""`halo-opt report RUN_DIR`: re-render every page and figure of a run folder from its artifacts."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a run folder: of `halo-opt demo`, `execute`, `tune`, `pareto` or `characterize`")) -> None:
    """Re-render every page (report.md) and figure (PNG) in RUN_DIR from its artifacts; changes no data.

    Example: halo-opt report runs/demo
    """
    from ..report import render

    written = render(run_dir)
    pages = [p for p in written if Path(p).suffix == ".md"]
    typer.echo(f"rendered {len(written) - len(pages)} figures and {len(pages)} pages in {run_dir}"
               + (f"; open {pages[-1]}" if pages else ""))
