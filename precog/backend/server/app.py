"""The FastAPI app of the model server: OpenAI endpoints, KV export, health and Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from precog.backend import AsyncEngine, Engine
from precog.backend.server import completions, kv_export
from precog.backend.server.errors import install_error_handlers
from precog.backend.server.generation import ClientGone, TokenStreams
from precog.backend.server.kv_source import KVSource
from precog.backend.server.metrics import ServerMetrics
from precog.backend.server.protocol import ModelCard, ModelList
from precog.backend.server.state import ServerState, server_state

log = logging.getLogger(__name__)
State = Annotated[ServerState, Depends(server_state)]


def create_app(engine: Engine, store_path: Path | None = None, kv_protect: bool = True) -> FastAPI:
    """An app serving `engine`; the engine's step loop runs while the app is up (its lifespan).

    store_path: the store whose KV blobs `kv_blob_id` refers to (opened read-only, on first use).
    kv_protect: whether compressed chat requests keep their system prompt and marked spans by default.
    """
    async_engine = AsyncEngine(engine)
    metrics = ServerMetrics(engine.stats, engine.kv_cache.bytes_per_block)
    state = ServerState(
        async_engine, KVSource(store_path), metrics, TokenStreams(async_engine, metrics), kv_protect
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async_engine.start()
        log.info("backend serving", extra={"model": engine.model_name, "max_model_len": engine.max_model_len})
        try:
            yield
        finally:
            async_engine.shutdown()
            state.kv.close()

    app = FastAPI(title="precog backend", summary="OpenAI-compatible model server", lifespan=lifespan)
    app.state.backend = state
    install_error_handlers(
        app,
        lambda error: metrics.rejected.labels(str(error.status), error.body.code or error.body.type).inc(),
    )

    @app.exception_handler(ClientGone)
    async def _client_gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; the aborted request was logged already

    app.include_router(completions.router)
    app.include_router(kv_export.router)

    @app.get("/v1/models")
    async def list_models(state: State) -> ModelList:
        return ModelList(data=[_card(state)])

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str, state: State) -> ModelCard:
        state.check_model(model)
        return _card(state)

    @app.get("/healthz")
    async def healthz(state: State) -> JSONResponse:
        running = state.engine.running
        return JSONResponse(
            {"status": "ok" if running else "stopped", "model": state.model_name},
            status_code=200 if running else 503,
        )

    @app.get("/metrics")
    async def prometheus(state: State) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _card(state: ServerState) -> ModelCard:
    return ModelCard(id=state.model_name, created=state.started, max_model_len=state.max_model_len)
