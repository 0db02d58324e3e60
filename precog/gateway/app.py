"""The FastAPI application: routers, error shape, size limit, and the Gateway started in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from precog.gateway.api import admin_routes, dashboard_routes, openai_routes, ops_routes
from precog.gateway.errors import install_error_handlers
from precog.gateway.limits import BodySizeLimit
from precog.gateway.lookup import CandidateGuard
from precog.gateway.ratelimit import RateLimiter
from precog.gateway.service import Gateway
from precog.gateway.settings import GatewaySettings
from precog.store import Embedder, Store


def create_app(
    settings: GatewaySettings | None = None,
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
    guard: CandidateGuard | None = None,
) -> FastAPI:
    """A gateway app; `store`, `embedder` and `guard` may be shared in (tests, several apps in one process),
    otherwise they are opened from the settings when the app starts."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = await Gateway.start(settings, store=store, embedder=embedder, guard=guard)
        try:
            yield
        finally:
            await app.state.gateway.stop()

    app = FastAPI(
        title="precog gateway",
        version="0.1.0",
        description="OpenAI-compatible front proxy that answers from storage when it can.",
        lifespan=lifespan,
    )
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    install_error_handlers(app)
    for router in (openai_routes.router, admin_routes.router, ops_routes.router, dashboard_routes.router):
        app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
