"""An upstream request, started before the gateway knows whether it is needed (StorInfer's parallel path).

It is sent at once or after a delay; a hit discards it (cancelled while waiting or sending, or its
response closed if it already came), a miss awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
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


class EarlyStart:
    """When the parallel path sends the upstream request. An upstream that is free to run (our backend)
    gets it after `delay_s`; one that bills per token gets it no sooner than the lookup's p99 over the
    last `window` lookups (none measured yet: only once the lookup has missed), so that a hit, decided
    within that time, has spent no token on a request it then cancels."""

    def __init__(self, delay_s: float, billed: bool, window: int = 1024, every: int = 32) -> None:
        self._delay_s = delay_s
        self._billed = billed
        self._seconds: deque[float] = deque(maxlen=window)
        self._every = every
        self._p99: float | None = None

    def delay_s(self) -> float | None:
        """Seconds to wait before sending; None: send only after a miss."""
        if not self._billed:
            return self._delay_s
        return None if self._p99 is None else max(self._delay_s, self._p99)

    def observe(self, seconds: float) -> None:
        """One lookup's duration; the p99 is recomputed every `every` lookups."""
        self._seconds.append(seconds)
        if self._billed and (self._p99 is None or len(self._seconds) % self._every == 0):
            ordered = sorted(self._seconds)
            self._p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
