"""The report stage: every page and figure, drawn from artifacts only (no stage draws).

:func:`render` re-renders whatever a folder holds: a demo run (``demo.json``), an execution
report (``report.json``), a Pareto front (``points.parquet``) or a MAC profile (``profile.json``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError


def render(folder: str | Path) -> list[Path]:
    """Re-render every page and figure in ``folder`` from its artifacts; returns the files written."""
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"run folder {d} not found; pass the --out folder of a halo-opt command")
    if (d / "demo.json").is_file():
        from .demo_report import render_demo

        return render_demo(d)
    out: list[Path] = []
    if (d / "report.json").is_file():
        from .execution import render_execution

        out += render_execution(d)
    if (d / "points.parquet").is_file():
        from .pareto_plot import render_pareto

        out.append(render_pareto(d))
    if (d / "profile.json").is_file() and (d / "codebooks.json").is_file():
        from .profile_plot import render_profile

        out.append(render_profile(d))
    if not out:
        raise UserError(f"{d} holds nothing to report on (demo.json, report.json, points.parquet or profile.json); "
                        "pass the --out folder of `halo-opt demo`, `execute`, `pareto` or `characterize`")
    return out
