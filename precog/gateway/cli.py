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

    from precog.core import ConfigError, configure_logging, load_settings
    from precog.gateway.app import create_app
    from precog.gateway.settings import GatewaySettings

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


@app.command()
def writer(
    store_path: Annotated[Path | None, typer.Option(help="Store directory (created if missing).")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis holding the replicas' streams.")] = None,
    snapshot_root: Annotated[Path | None, typer.Option(help="Where to publish snapshots.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file ([gateway] table).")] = None,
) -> None:
    """Run the one store writer behind `store_role = "replica"` gateways: persist their write-backs and
    invalidations from Redis, and publish the snapshots they serve."""
    import signal
    import threading

    import redis

    from precog.core import ConfigError, configure_logging, load_settings
    from precog.gateway.replication import StoreWriter
    from precog.gateway.settings import GatewaySettings
    from precog.store import MODEL_DIM, MODEL_NAME, NotAStoreError, Store

    try:
        settings = load_settings(
            GatewaySettings, config, store_path=store_path, redis_url=redis_url, snapshot_root=snapshot_root
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if settings.redis_url is None:
        raise typer.BadParameter("the writer needs redis_url (--redis-url or PRECOG_GATEWAY_REDIS_URL)")
    configure_logging(settings.log_level)
    try:
        model, dim = Store.identity(settings.store_path)
    except NotAStoreError:
        model, dim = MODEL_NAME, MODEL_DIM
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
    with Store.open(settings.store_path, embedding_model=model, dim=dim, sync=True, progress=False) as store:
        StoreWriter(
            store,
            client,
            snapshot_root=settings.snapshot_root,
            snapshot_every_s=settings.snapshot_every_s,
            snapshot_keep=settings.snapshot_keep,
            batch=settings.writer_batch,
        ).run(stop)


if __name__ == "__main__":
    app()
