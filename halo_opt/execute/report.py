"""The execution report artifact: ``report.json`` (the dict built by
:func:`pipeline.validate_execution`), written and read here. Its page and figures
(``report.md``, ``error_per_layer.png``, ``accuracy_vs_cost.png``) are drawn by
:func:`halo_opt.report.execution.render_execution` from this file."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import read_json, write_json


def write_report(folder: str | Path, rep: dict) -> Path:
    """Write ``folder/report.json``."""
    return write_json(Path(folder) / "report.json", rep)


def load_report(folder: str | Path) -> dict:
    return read_json(Path(folder) / "report.json", "execution report")
