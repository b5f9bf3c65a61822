"""Artifacts: atomic writes and provenance.

Every stage writes its outputs atomically (temporary file in the same folder, then
``os.replace``) so a crash never leaves a half-written artifact, and records what it was
made from (SHA-256 of inputs, package version, parameters) in a ``meta`` dict so a plan can
never be applied silently to another model or hardware profile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import UserError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_stamp(folder: str | Path) -> tuple:
    """``(relative path, size, mtime_ns)`` of every file under ``folder``, sorted: changes when a
    file is rewritten (a cheap identity for per-process caches of what was loaded from it)."""
    root = Path(folder)
    return tuple(sorted((str(p.relative_to(root)), st.st_size, st.st_mtime_ns)
                        for p in root.rglob("*") if p.is_file() and (st := p.stat())))


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (sorted keys)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for files and folders. On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.is_dir() and tmp_path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read JSON, turning a missing or corrupt file into a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found; check the path")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON ({e}); regenerate it") from None


def read_toml(path: str | Path, what: str = "file") -> dict:
    """Read TOML, turning a missing file or a syntax error into a one-line :class:`UserError`."""
    import tomllib

    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found; check the path") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{what} {path}: TOML syntax error: {e}") from None


def find_key(d: Any, key: str) -> Any:
    """First value of ``key`` anywhere in a nested dict (provenance blocks nest inputs)."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            r = find_key(v, key)
            if r is not None:
                return r
    return None


def write_parquet(path: str | Path, df) -> Path:
    """Write a pandas DataFrame as Parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_parquet(path: str | Path, what: str = "table"):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found; check the path")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise UserError(f"{what} {path} is not a readable Parquet file ({type(e).__name__}); regenerate it") from None


def provenance(**inputs: Any) -> dict[str, Any]:
    """Metadata block recorded with every artifact: package version and input identities."""
    return {"halo_opt_version": __version__, "inputs": inputs}
