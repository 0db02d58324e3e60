"""The OpenAI-compatible endpoints: what the openai SDK, curl or a chat app calls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from precog.gateway.api.deps import gateway_of, tenant
from precog.gateway.cache_control import parse_cache_control
from precog.gateway.query import CacheQuery, chat_query, completion_query
from precog.gateway.schemas import ChatCompletionRequest, CompletionRequest
from precog.gateway.scoping import SCOPE_HEADER, named_scope

router = APIRouter(tags=["openai"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed or invalid request"},
    401: {"description": "Missing or unknown API key"},
    404: {"description": "Unknown model"},
    413: {"description": "Request body too large"},
    429: {"description": "Rate limit reached"},
    502: {"description": "Upstream failed"},
    503: {"description": "Upstream overloaded or circuit open"},
    504: {"description": "Upstream timed out, or only-if-cached missed"},
}
_CONTROL = Header(
    None, alias="x-precog-cache-control", description="bypass | refresh | only-if-cached (per request)."
)
_SCOPE = Header(
    None,
    alias=SCOPE_HEADER,
    description="The request's own scope name: the system prompt then leaves the scope.",
)


async def _answer(
    request: Request,
    body: ChatCompletionRequest | CompletionRequest,
    query: CacheQuery,
    cache_control: str | None,
) -> Response:
    gateway = gateway_of(request)
    control = parse_cache_control(cache_control)
    await gateway.models.check(body.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await gateway.proxy.handle(
        query, body.model_dump(exclude_unset=True), body.stream, include_usage, control
    )


@router.post("/v1/chat/completions", responses=_ERRORS)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    caller: str = Depends(tenant),
    cache_control: str | None = _CONTROL,
    scope: str | None = _SCOPE,
) -> Response:
    """Chat completion, answered from storage when a stored answer fits, else by the upstream."""
    templates = gateway_of(request).settings.scope_templates
    query = chat_query(body, caller, templates, named_scope(scope))
    return await _answer(request, body, query, cache_control)


@router.post("/v1/completions", responses=_ERRORS)
async def completions(
    body: CompletionRequest,
    request: Request,
    caller: str = Depends(tenant),
    cache_control: str | None = _CONTROL,
    scope: str | None = _SCOPE,
) -> Response:
    """Text completion, answered from storage when a stored answer fits, else by the upstream."""
    return await _answer(request, body, completion_query(body, caller, named_scope(scope)), cache_control)


@router.get("/v1/models", responses={401: _ERRORS[401], 502: _ERRORS[502], 504: _ERRORS[504]})
async def list_models(request: Request, _: str = Depends(tenant)) -> dict[str, Any]:
    """The models served (relayed from the upstream unless configured)."""
    return await gateway_of(request).models.listing()
