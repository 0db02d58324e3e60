"""The `precog` command: one sub-command group per package."""

from __future__ import annotations

import typer

from precog.backend.cli import app as backend_app
from precog.backend.cli import model_app
from precog.gateway.cli import app as gateway_app
from precog.precompute.cli import app as precompute_app
from precog.shell.up import up
from precog.store.cli import app as store_app

app = typer.Typer(
    help="precog: a storage-assisted LLM inference gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(store_app, name="store", help="Inspect and maintain a store (records, vectors, KV blobs).")
app.add_typer(model_app, name="model", help="Prepare model checkpoints for the backend.")
app.add_typer(backend_app, name="backend", help="The OpenAI-compatible model server.")
app.add_typer(gateway_app, name="gateway", help="The OpenAI-compatible front proxy.")
app.add_typer(precompute_app, name="precompute", help="Build a store of likely Q&A from a corpus.")
app.command(help="Start backend and gateway on localhost with the embedded defaults.")(up)

if __name__ == "__main__":
    app()
