"""Where halo-opt finds its shipped data and keeps its cache.

The repository keeps ``data/`` and ``formulations/`` top-level, beside the package (an editable
install, ``pip install -e .``, reads them there); a wheel carries copies in ``halo_opt/_data/``
(``setup.py`` puts them there at build time). :func:`shipped_root` finds either.
``HALO_OPT_CACHE`` overrides the cache folder (default ``~/.cache/halo-opt``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def shipped_root() -> Path:
    """The folder holding ``data/`` and ``formulations/``: the wheel's ``halo_opt/_data`` or the checkout."""
    for root in (PACKAGE_DIR / "_data", REPO_ROOT):
        if (root / "data").is_dir() and (root / "formulations").is_dir():
            return root
    raise UserError(f"shipped data not found in {PACKAGE_DIR / '_data'} or {REPO_ROOT}; "
                    "reinstall halo-opt (`pip install .` builds a wheel that carries them)")


def data_dir() -> Path:
    """The shipped ``data/`` folder (MAC profiles, DVFS tables, accelerator configs)."""
    return shipped_root() / "data"


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
    return shipped_root() / "formulations"


def scenario_file(name_or_path: str | Path) -> Path:
    """A shipped scenario by bare name (``performance`` -> ``formulations/performance.toml``), else the path."""
    p = Path(name_or_path)
    if p.suffix or p.exists():
        return p
    q = formulations_dir() / f"{p.name}.toml"
    if not q.is_file():
        valid = sorted(x.stem for x in formulations_dir().glob("*.toml"))
        raise UserError(f"unknown scenario {str(name_or_path)!r}; valid: {', '.join(valid)} or a .toml path")
    return q


def cache_dir() -> Path:
    """Cache root (synthesized netlists, pulled models); created on demand."""
    d = Path(os.environ.get("HALO_OPT_CACHE", Path.home() / ".cache" / "halo-opt"))
    d.mkdir(parents=True, exist_ok=True)
    return d
