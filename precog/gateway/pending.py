"""An upstream request, started before the gateway knows whether it is needed (StorInfer's parallel path).

It is sent at once or after a delay; a hit discards it (cancelled while waiting or sending, or its
response closed if it already came), a miss awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import httpx

from precog.gateway.upstream import Upstream

# Only the gateway may point the upstream at a stored KV cache: a client naming a blob id could read
# another tenant's conversation through it.
_GATEWAY_ONLY = frozenset({"kv_blob_id", "kv_blob", "kv_reuse_blob_id", "kv_reuse_blob"})
KVParam = Literal["kv_blob_id", "kv_reuse_blob_id"]  # import a conversation's KV; reuse a near one's


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What the gateway sends upstream: the client's fields, and at most one stored KV reference, which only
    saves time, so the upstream may refuse it and get the request again without."""

    path: str
    fields: Mapping[str, Any]
    kv_param: KVParam | None = None
    kv_blob_id: str | None = None

    @classmethod
    def of(cls, path: str, body: Mapping[str, Any]) -> UpstreamRequest:
        return cls(path, MappingProxyType({k: v for k, v in body.items() if k not in _GATEWAY_ONLY}))

    def with_kv(self, param: KVParam, blob_id: str) -> UpstreamRequest:
        return UpstreamRequest(self.path, self.fields, param, blob_id)

    def without_kv(self) -> UpstreamRequest:
        return UpstreamRequest(self.path, self.fields)

    def json(self) -> dict[str, Any]:
        body = dict(self.fields)
        if self.kv_param is not None:
            body[self.kv_param] = self.kv_blob_id
        return body


@dataclass(slots=True)
class PendingRequest:
    """An upstream request that may already be running while the lookup decides whether it is needed."""

    task: asyncio.Task[httpx.Response]
    go: asyncio.Event
    request: UpstreamRequest

    async def response(self) -> httpx.Response:
        self.go.set()
        return await self.task

    async def discard(self) -> None:
        """Cancel the request, or close its response if it already arrived (a hit beat it).

        `go` stays unset: a delayed request must be cancelled while it waits, never woken to send."""
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(BaseException):
            response = await self.task
            await response.aclose()


def start_request(upstream: Upstream, request: UpstreamRequest, delay_s: float) -> PendingRequest:
    """Send `request` after `delay_s` (0: now), unless the lookup decides sooner."""
    go = asyncio.Event()

    async def send() -> httpx.Response:
        if delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(go.wait(), delay_s)
        return await upstream.post(request.path, request.json())

    return PendingRequest(asyncio.create_task(send(), name="upstream-request"), go, request)
