"""The gateway's door to the store: reads on a small thread pool, every write on one writer thread.

RocksDB allows one writer per database and FAISS inserts must not interleave, so all mutations
(write-back, hit counts, deletes, invalidations, snapshots) are serialised on a single thread, while
lookups run concurrently off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from store import Entry, Store

T = TypeVar("T")


class StoreAccess:
    def __init__(self, store: Store, readers: int = 4) -> None:
        self.store = store
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="precog-store-read")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="precog-store-write")

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(*args, **kwargs))

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        """Let queued writes finish, then close the store."""
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.store.close()

    async def find_exact(self, scope: str, query: str) -> Entry | None:
        return await self._read(self.store.find_exact, scope, query)

    async def search(self, scope: str, vector: np.ndarray, k: int) -> list[tuple[Entry, float]]:
        return await self._read(self.store.search, scope, vector, k)

    async def get(self, entry_id: str) -> Entry | None:
        return await self._read(self.store.get, entry_id)

    async def entries(self, scope: str | None, limit: int, offset: int, text: str | None) -> list[Entry]:
        return await self._read(self.store.entries, scope=scope, limit=limit, offset=offset, text=text)

    async def ping(self) -> None:
        """Raises when the store is closed or unreadable (a cheap point read)."""
        await self._read(self.store.get, "readiness-probe")

    async def put(self, entry: Entry) -> None:
        await self._write(self.store.put, entry)

    async def record_hit(self, entry_id: str) -> None:
        await self._write(self.store.record_hit, entry_id)

    async def invalidate(self, **criteria: Any) -> int:
        return int(await self._write(self.store.invalidate, **criteria))

    async def export(self, destination: Path) -> Path:
        """A consistent copy of the store (directory or .tar.gz), taken between writes."""
        return await self._write(self.store.export, destination)
