"""Probes and metrics: liveness, readiness (store open, upstream reachable), Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from precog.gateway.api.deps import gateway_of
from precog.gateway.errors import GatewayError

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Store or upstream not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to take traffic: the store answers and the upstream is reachable."""
    gateway = gateway_of(request)
    checks: dict[str, Any] = {}
    try:
        await gateway.store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # any failure of the store means not ready; the message says which
        checks["store"] = f"failed: {exc!r}"
    try:
        await gateway.upstream.get_json("/v1/models")
        checks["upstream"] = "ok"
    except GatewayError as exc:
        checks["upstream"] = f"failed: {exc.message}"
    if gateway.shared is not None:
        checks["shared_tier"] = "ok" if gateway.shared.up else "degraded (serving from the local store)"
    ready = checks["store"] == "ok" and checks["upstream"] == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(gateway_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
