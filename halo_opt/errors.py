"""User-facing errors.

A :class:`UserError` is bad input the user can fix: the CLI prints its message as one
line and exits with status 2 (no traceback). Messages name the problem and the fix,
e.g. ``UserError("error budget 1e-6 is below the smallest achievable error 3.2e-5; use --budget >= 3.2e-5")``.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: one line naming the problem and the fix. CLI exit code 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
