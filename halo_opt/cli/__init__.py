"""Command-line interface (typer). Composes the stages; holds no logic of its own.

Exit codes: 0 success, 1 failure (a bug or an environment problem), 2 user error
(bad flag, missing file, infeasible budget...), always as one clear line on stderr.
Each stage registers its command from its own module ``halo_opt/cli/<stage>.py``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys

import typer

from ..errors import UserError

app = typer.Typer(
    name="halo-opt",
    help="Hardware-aware quantization planner: per-code MAC timing/energy -> Hessian error budgets -> exact MIP plans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: command modules, in the order of the data flow; each defines commands on ``app``.
COMMAND_MODULES = ["characterize", "calibrate", "costs", "plan", "execute", "report", "demo", "models"]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"halo-opt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Hardware-aware quantization planner: per-code MAC timing/energy -> Hessian error budgets -> exact MIP plans.

    Example: halo-opt demo --out runs/demo
    """


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def emit(line: str, data: dict, as_json: bool) -> None:
    """A command's result: ``line`` for people, or ``data`` as one JSON object on stdout (``--json``;
    non-finite numbers become null)."""
    if as_json:
        typer.echo(json.dumps(_finite(data), default=str))
    else:
        typer.echo(line)


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and callable(o.item):  # numpy scalars
        return _finite(o.item())
    return o


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit (2 = user error)."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the typer app, mapping errors to one line + exit code."""
    _register()
    debug = bool(os.environ.get("HALO_OPT_DEBUG"))
    try:
        app(args=argv, standalone_mode=False)
    except UserError as e:
        if debug:
            raise
        fail(str(e), 2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        fail("interrupted; rerun the same command to resume", 1)
    except Exception as e:  # click usage errors and failures
        kind = _click_kind(e)
        if kind == "usage":
            ctx = getattr(e, "ctx", None)
            cmd = f"halo-opt {ctx.info_name} --help" if ctx is not None and ctx.parent is not None else "halo-opt --help"
            fail(f"{e.format_message()} (see `{cmd}`)", 2)
        if kind == "abort":
            fail("aborted", 1)
        if kind == "exit":
            raise SystemExit(e.exit_code)
        if debug:
            raise
        fail(f"{type(e).__name__}: {e} (set HALO_OPT_DEBUG=1 for the traceback)", 1)


def _click_kind(e: Exception) -> str | None:
    """Classify click exceptions (typer may bundle its own copy of click as ``typer._click``)."""
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            exc = importlib.import_module(mod)
        except ImportError:
            continue
        for kind, name in (("usage", "UsageError"), ("abort", "Abort"), ("exit", "Exit")):
            cls = getattr(exc, name, None)  # typer's bundled click lacks some of them
            if cls is not None and isinstance(e, cls):
                return kind
    return None

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
