"""Where halo-opt finds its shipped data and keeps its cache.

The repository layout puts ``data/`` and ``formulations/`` beside the package
(installed editable, ``pip install -e .``). ``HALO_OPT_CACHE`` overrides the cache folder
(default ``~/.cache/halo-opt``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shipped ``data/`` folder (MAC profiles, DVFS tables, accelerator configs)."""
    d = REPO_ROOT / "data"
    if not d.is_dir():
        raise UserError(f"shipped data folder {d} not found; install halo-opt from its repository with `pip install -e .`")
    return d


def data_file(name_or_path: str | Path, subdir: str, what: str) -> Path:
    """``data/<subdir>/<name>.toml`` for a bare name, else the given path (a user's own file)."""
    p = Path(name_or_path)
    if p.suffix:
        return p
    p = data_dir() / subdir / f"{name_or_path}.toml"
    if not p.is_file():
        valid = sorted(x.stem for x in (data_dir() / subdir).glob("*.toml"))
        raise UserError(f"unknown {what} {str(name_or_path)!r}; valid: {', '.join(valid)} or a .toml path")
    return p


def formulations_dir() -> Path:
    """The shipped ``formulations/`` folder (scenario TOML files)."""
    return REPO_ROOT / "formulations"


def cache_dir() -> Path:
    """Cache root (synthesized netlists, pulled models); created on demand."""
    d = Path(os.environ.get("HALO_OPT_CACHE", Path.home() / ".cache" / "halo-opt"))
    d.mkdir(parents=True, exist_ok=True)
    return d
