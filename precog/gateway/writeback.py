"""Write-back: a miss's answer becomes a stored entry, but only a complete, deterministic one.

Never stored: errors, truncated answers (`finish_reason: length`), answers of requests with stop strings
(they may have been cut), answers cut off by a cancelled or failed stream, and answers sampled above the
configured temperature (default 0: greedy only).
A bounded queue decouples requests from the store; one worker embeds and writes what has queued up as
one group commit, so that a durable store (`store_sync`, an fsync per commit) costs one sync per group.
A replica of a read-only snapshot hands each entry to the store writer through a Redis stream instead
(write_queue) and shares it at once through the exact tier, so every replica serves it before the next
snapshot.
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
from precog.store import Entry, Source, normalise_text

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1024
_GROUP = 64  # most write-backs committed together


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
            group = [await self._queue.get()]
            while len(group) < _GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            try:
                await self._store_group(group)
            except Exception:  # a failed write loses cache entries, never the worker
                self._metrics.writebacks.labels("failed").inc(len(group))
                log.exception("write-back failed", extra={"entries": len(group)})
            finally:
                for _ in group:
                    self._queue.task_done()

    async def _store_group(self, group: list[_Pending]) -> None:
        """Store what is queued in one batch: a single commit (one fsync with `store_sync`) for the group,
        and only then is each entry counted and logged as stored."""
        chosen: dict[tuple[str, str], _Pending] = {}
        for pending in group:
            key = (pending.query.scope, normalise_text(pending.query.question))
            if key not in chosen or pending.replace:
                chosen[key] = pending
        made = await asyncio.gather(*(self._entry_of(pending) for pending in chosen.values()))
        entries = [entry for entry in made if entry is not None]
        if self._replica and self._shared is not None:
            entries = [entry for entry in entries if await self._handed_to_writer(entry)]
        elif entries:
            await self._store.put_many(entries)
        for entry in entries:
            if self._shared is not None:
                await self._shared.put_exact(HotEntry.of(entry))
            self._metrics.writebacks.labels("stored").inc()
            log.info("write-back stored", extra={"entry_id": entry.id, "scope": entry.scope})

    async def _entry_of(self, pending: _Pending) -> Entry | None:
        query = pending.query
        existing = await self._store.find_exact(query.scope, query.question)
        if existing is not None and not pending.replace:
            self._metrics.writebacks.labels("duplicate").inc()
            return None
        vector = await self._batcher.embed(query.question)
        ttl = self._settings.writeback_ttl_s
        return Entry(
            scope=query.scope,
            query=query.question,
            answer=pending.answer,
            embedding=vector,
            model=query.model,
            source=Source.WRITE_BACK,
            expires=time.time() + ttl if ttl else None,
            meta={"tenant": query.tenant},
            completion_tokens=pending.completion_tokens or None,
        )

    async def _handed_to_writer(self, entry: Entry) -> bool:
        if self._shared is not None and await self._shared.enqueue_write(entry) is not None:
            return True
        self._metrics.writebacks.labels("unacknowledged").inc()
        log.warning(
            "write-back not handed to the store writer: shared tier down", extra={"scope": entry.scope}
        )
        return False
