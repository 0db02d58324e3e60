"""The dashboard: one static page and its vendored chart library (uPlot, MIT), fed by the admin API."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from precog.gateway.errors import GatewayError

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_FILES = resources.files("precog.gateway.dashboard")
_STATIC = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    return HTMLResponse((_FILES / "index.html").read_text())


@router.get("/dashboard/static/{name}")
async def static(name: str) -> Response:
    media_type = _STATIC.get(name)
    if media_type is None:
        raise GatewayError(404, f"no dashboard file {name!r}", code="not_found")
    body = (_FILES / "static" / name).read_bytes()
    return Response(body, media_type=media_type, headers={"cache-control": "max-age=3600"})
