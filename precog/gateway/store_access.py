"""The gateway's door to the store: reads on a small thread pool, every write on one writer thread.

RocksDB allows one writer per database and FAISS inserts must not interleave, so all mutations
(write-back, hit counts, deletes, invalidations, snapshots) are serialised on a single thread, while
lookups run concurrently off the event loop.

A replica serves a read-only snapshot instead, and `swap` replaces it with a newer one between requests:
each read holds the snapshot it started on, and an old snapshot is closed only once its last read is
done, so no request ever sees a closed store. Invalidations a replica hears of before a snapshot that
includes them are kept as masks over the snapshot's entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from precog.gateway.shared import HotEntry, Invalidation
from precog.store import Entry, SnapshotInfo, Store

T = TypeVar("T")


def stream_position(stream_id: str) -> tuple[int, int]:
    """A Redis stream id ("1700000000000-3") as a comparable pair."""
    millis, _, seq = stream_id.partition("-")
    return int(millis), int(seq or 0)


Mask = tuple[tuple[int, int], Invalidation]


class _Generation:
    """One opened store, the invalidations it does not include yet (masks), and the reads running on it.

    The masks belong to the store: a read is filtered with the masks of the store it read, so a read that
    began on a snapshot which still holds an invalidated entry never sees the masks of its successor."""

    def __init__(self, store: Store, snapshot: SnapshotInfo | None, masks: list[Mask] | None = None) -> None:
        self.store = store
        self.snapshot = snapshot
        self.masks = masks or []
        self.readers = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> Store:
        self.readers += 1
        self.idle.clear()
        return self.store

    def leave(self) -> None:
        self.readers -= 1
        if self.readers == 0:
            self.idle.set()

    def hides(self, entry: Entry | HotEntry) -> bool:
        return any(inv.removes(entry) for _, inv in self.masks)


class StoreAccess:
    def __init__(self, store: Store, readers: int = 4, snapshot: SnapshotInfo | None = None) -> None:
        self._current = _Generation(store, snapshot)
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="precog-store-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="precog-store-write")

    @property
    def store(self) -> Store:
        return self._current.store

    @property
    def snapshot(self) -> SnapshotInfo | None:
        """The published snapshot being served (replicas), None for a store opened for writing."""
        return self._current.snapshot

    async def _read(self, fn: Callable[[Store], T]) -> tuple[T, _Generation]:
        """`fn` on the current store, and the generation it ran on (whose masks filter what it found)."""
        generation = self._current
        store = generation.enter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, fn, store), generation
        finally:
            generation.leave()

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        """Let queued writes finish, then close the store."""
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()

    async def swap(self, store: Store, snapshot: SnapshotInfo) -> None:
        """Serve `store` from now on; close the old one once its running reads are done. Masks that the
        new snapshot already includes (its writer applied them: `invalidations_applied`) are dropped."""
        old = self._current
        applied = snapshot.meta.get("invalidations_applied")
        upto = stream_position(applied) if applied else (-1, -1)
        self._current = _Generation(store, snapshot, [(at, inv) for at, inv in old.masks if at > upto])
        await old.idle.wait()
        await self._write(old.store.close)

    def mask(self, invalidation: Invalidation, stream_id: str) -> None:
        """Hide the entries `invalidation` removes until a snapshot that includes it is swapped in."""
        self._current.masks.append((stream_position(stream_id), invalidation))

    def masked(self, entry: Entry | HotEntry) -> bool:
        """Whether an invalidation the served snapshot does not include yet removes `entry`."""
        return self._current.hides(entry)

    async def _read_one(self, fn: Callable[[Store], Entry | None]) -> Entry | None:
        entry, generation = await self._read(fn)
        return None if entry is None or generation.hides(entry) else entry

    async def find_exact(self, scope: str, query: str) -> Entry | None:
        return await self._read_one(lambda s: s.find_exact(scope, query))

    async def search(self, scope: str, vector: np.ndarray, k: int) -> list[tuple[Entry, float]]:
        found, generation = await self._read(lambda s: s.search(scope, vector, k))
        return [(entry, score) for entry, score in found if not generation.hides(entry)]

    async def search_text(self, scope: str, text: str, k: int) -> list[tuple[Entry, float]]:
        found, generation = await self._read(lambda s: s.search_text(scope, text, k))
        return [(entry, score) for entry, score in found if not generation.hides(entry)]

    async def get(self, entry_id: str) -> Entry | None:
        return await self._read_one(lambda s: s.get(entry_id))

    async def entries(self, scope: str | None, limit: int, offset: int, text: str | None) -> list[Entry]:
        if not self._current.masks:
            page, _ = await self._read(
                lambda s: s.entries(scope=scope, limit=limit, offset=offset, text=text)
            )
            return page
        found, generation = await self._read(
            lambda s: s.entries(scope=scope, limit=limit + offset + 1000, text=text)
        )
        return [entry for entry in found if not generation.hides(entry)][offset : offset + limit]

    async def count_matching(self, invalidation: Invalidation) -> int:
        """Entries of the served snapshot that `invalidation` removes (what a replica reports)."""

        def count(store: Store) -> int:
            if invalidation.ids:
                found = [store.get(entry_id) for entry_id in invalidation.ids]
                return sum(1 for e in found if e is not None and invalidation.removes(e))
            matching = store.entries(scope=invalidation.scope, limit=1 << 30, text=invalidation.substring)
            return sum(1 for e in matching if invalidation.removes(e))

        counted, _ = await self._read(count)
        return counted

    async def ping(self) -> None:
        """Raises when the store is closed or unreadable (a cheap point read)."""
        await self._read(lambda s: s.get("readiness-probe"))

    async def put_many(self, entries: list[Entry]) -> None:
        await self._write(self.store.put_many, entries)

    async def record_hit(self, entry_id: str) -> None:
        await self._write(self.store.record_hit, entry_id)

    async def invalidate(self, **criteria: Any) -> int:
        return int(await self._write(self.store.invalidate, **criteria))

    async def export(self, destination: Path) -> Path:
        """A consistent copy of the store (directory or .tar.gz), taken between writes."""
        return await self._write(self.store.export, destination)
