"""Files of the shared folder that sits beside a clone (``REPO/../shared``; CI puts it there). A
worktree may sit deeper, so every ancestor's ``shared/`` is tried; tests that need a file skip
cleanly when none has it. No machine-specific paths."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_file(rel: str) -> Path:
    """``<ancestor>/shared/<rel>`` for the nearest ancestor of the repository that has it, else ``REPO/../shared/<rel>``."""
    return next((p / "shared" / rel for p in REPO.parents if (p / "shared" / rel).is_file()), REPO.parent / "shared" / rel)


SKY130 = shared_file("liberty/sky130hd_tt.lib.gz")
