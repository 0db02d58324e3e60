"""An upstream request started before the gateway knows whether it is needed (StorInfer's parallel path).

It is sent at once or after a delay; a hit discards it (cancelled while waiting or sending, or its
response closed if it already came), a miss awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

from precog.gateway.upstream import Upstream


@dataclass(slots=True)
class PendingRequest:
    """An upstream request that may already be running while the lookup decides whether it is needed."""

    task: asyncio.Task[httpx.Response]
    go: asyncio.Event
    without_kv: dict[str, Any] | None = None  # the same request without the stored KV reference

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


def start_request(
    upstream: Upstream,
    path: str,
    body: dict[str, Any],
    delay_s: float,
    without_kv: dict[str, Any] | None = None,
) -> PendingRequest:
    """Send `body` to `path` after `delay_s` (0: now), unless the lookup decides sooner."""
    go = asyncio.Event()

    async def send() -> httpx.Response:
        if delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(go.wait(), delay_s)
        return await upstream.post(path, body)

    return PendingRequest(asyncio.create_task(send(), name="upstream-request"), go, without_kv)
