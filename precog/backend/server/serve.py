"""`precog backend serve`: load the engine and serve it over HTTP with uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from precog.core import ConfigError, configure_logging, load_settings

MiB = 1 << 20


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (backend.host; default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (backend.port; default 8001).")] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Llama-family checkpoint (engine.model_dir; default: the prepared SmolLM2)."),
    ] = None,
    store_path: Annotated[
        Path | None,
        typer.Option(help="Store for kv_blob_id lookups (backend.store_path; default var/store)."),
    ] = None,
    kv_memory_mb: Annotated[
        int | None, typer.Option(help="KV-cache budget in MiB (engine.kv_memory_bytes).")
    ] = None,
    max_num_seqs: Annotated[
        int | None, typer.Option(help="Most sequences per step (engine.max_num_seqs).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file (also $PRECOG_CONFIG).")] = None,
) -> None:
    """Start the OpenAI-compatible model server."""
    # torch, transformers and uvicorn load only when the command runs, not for `precog --help`.
    import uvicorn

    from precog.backend import Engine, EngineConfig, PrepareError
    from precog.backend.server.app import create_app
    from precog.backend.server.settings import BackendSettings

    try:
        settings = load_settings(BackendSettings, config, host=host, port=port, store_path=store_path)
        configure_logging(settings.log_level)
        engine_config = load_settings(
            EngineConfig,
            config,
            model_dir=model_dir,
            kv_memory_bytes=kv_memory_mb * MiB if kv_memory_mb is not None else None,
            max_num_seqs=max_num_seqs,
        )
        engine = Engine(engine_config)
    except (ConfigError, PrepareError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    app = create_app(engine, store_path=settings.store_path, kv_protect=settings.kv_protect)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
