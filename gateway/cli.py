"""Command-line interface of this package (registered under `precog`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (settings default: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (settings default: 8000).")] = None,
    upstream_url: Annotated[str | None, typer.Option(help="OpenAI-compatible upstream.")] = None,
    store_path: Annotated[Path | None, typer.Option(help="Store directory (created if missing).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file ([gateway] table).")] = None,
) -> None:
    """Run the OpenAI-compatible gateway (answers from the store, relays misses upstream)."""
    import uvicorn

    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from precog import ConfigError, configure_logging, load_settings

    try:
        settings = load_settings(
            GatewaySettings, config, host=host, port=port, upstream_url=upstream_url, store_path=store_path
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
