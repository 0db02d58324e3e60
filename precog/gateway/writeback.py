"""Write-back: a miss's answer becomes a stored entry, but only a complete, deterministic one.

Never stored: errors, truncated answers (`finish_reason: length`), answers of requests with stop strings
(they may have been cut), answers cut off by a cancelled or failed stream, and answers sampled above the
configured temperature (default 0: greedy only).
A bounded queue decouples requests from the store; one worker embeds and writes, in order. A replica of a
read-only snapshot hands the entry to the store writer through a Redis stream instead (write_queue)
and shares it at once through the exact tier, so every replica serves it before the next snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from precog.gateway.batcher import EmbeddingBatcher
from precog.gateway.metrics import GatewayMetrics
from precog.gateway.openai_format import AnswerCollector
from precog.gateway.query import CacheQuery
from precog.gateway.settings import GatewaySettings
from precog.gateway.shared import HotEntry, SharedCache
from precog.gateway.store_access import StoreAccess
from precog.store import Entry, Source

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class _Pending:
    query: CacheQuery
    answer: str
    completion_tokens: int | None
    replace: bool


class WriteBack:
    def __init__(
        self,
        settings: GatewaySettings,
        store: StoreAccess,
        batcher: EmbeddingBatcher,
        metrics: GatewayMetrics,
        shared: SharedCache | None = None,
        replica: bool = False,
    ) -> None:
        self._settings = settings
        self._replica = replica
        self._store = store
        self._batcher = batcher
        self._metrics = metrics
        self._shared = shared
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(_QUEUE_SIZE)
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="write-back")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def drain(self) -> None:
        """Wait until everything offered so far is stored (tests, snapshots)."""
        await self._queue.join()

    def refusal(self, query: CacheQuery) -> str | None:
        """Why this request's answer may not be stored, or None if it may (once it is complete)."""
        if not self._settings.writeback_enabled:
            return "write-back is disabled"
        if query.uncacheable:
            return query.uncacheable
        if query.stop:
            return "stop strings may have cut the answer short"
        temperature = 1.0 if query.temperature is None else query.temperature
        if temperature > self._settings.writeback_max_temperature:
            return f"temperature {temperature} is above {self._settings.writeback_max_temperature}"
        return None

    def offer(self, query: CacheQuery, answer: AnswerCollector, replace: bool = False) -> None:
        if self.refusal(query) is not None:
            self._metrics.writebacks.labels("refused").inc()
            return
        if not answer.complete:
            self._metrics.writebacks.labels("incomplete").inc()
            return
        try:
            self._queue.put_nowait(_Pending(query, answer.text, answer.completion_tokens, replace))
        except asyncio.QueueFull:
            self._metrics.writebacks.labels("dropped").inc()
            log.warning("write-back queue full, answer dropped", extra={"scope": query.scope})

    async def _run(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._store_one(pending)
            except Exception:  # a failed write loses one cache entry, never the worker
                self._metrics.writebacks.labels("failed").inc()
                log.exception("write-back failed", extra={"scope": pending.query.scope})
            finally:
                self._queue.task_done()

    async def _store_one(self, pending: _Pending) -> None:
        query = pending.query
        scope = query.scope
        existing = await self._store.find_exact(scope, query.question)
        if existing is not None and not pending.replace:
            self._metrics.writebacks.labels("duplicate").inc()
            return
        vector = await self._batcher.embed(query.question)
        ttl = self._settings.writeback_ttl_s
        entry = Entry(
            scope=scope,
            query=query.question,
            answer=pending.answer,
            embedding=vector,
            model=query.model,
            source=Source.WRITE_BACK,
            expires=time.time() + ttl if ttl else None,
            meta={"tenant": query.tenant},
            completion_tokens=pending.completion_tokens or None,
        )
        if self._replica and self._shared is not None:
            if await self._shared.enqueue_write(entry) is None:
                self._metrics.writebacks.labels("unacknowledged").inc()
                log.warning(
                    "write-back not handed to the store writer: shared tier down", extra={"scope": scope}
                )
                return
        else:
            await self._store.put(entry)
        if self._shared is not None:
            await self._shared.put_exact(HotEntry.of(entry))
        self._metrics.writebacks.labels("stored").inc()
