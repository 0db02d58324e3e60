"""A replica's view of the published snapshots: open the current one, and swap in each newer one.

The new snapshot is opened (records and vector index) off the event loop while requests keep using the
old one; the swap itself is one assignment, so a request sees one snapshot or the other, never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from precog.gateway.store_access import StoreAccess
from precog.store import SnapshotInfo, Store, StoreError, current_snapshot

log = logging.getLogger(__name__)


def open_snapshot(info: SnapshotInfo) -> Store:
    """Open a published snapshot read-only, with its vector index loaded (so the first request is fast)."""
    model, dim = Store.identity(info.path)
    store = Store.open(
        info.path, embedding_model=model, dim=dim, read_only=True, create=False, progress=False
    )
    try:
        len(store)
    except BaseException:
        store.close()
        raise
    return store


async def wait_for_snapshot(root: Path, timeout_s: float, poll_s: float) -> SnapshotInfo:
    """The current snapshot, waiting for the writer to publish the first one."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = current_snapshot(root)
        if info is not None:
            return info
        if time.monotonic() >= deadline:
            raise StoreError(
                f"no snapshot published under {root} after {timeout_s:.0f}s: start the store writer "
                "(`precog gateway writer`) or publish one (`precog store publish`)"
            )
        await asyncio.sleep(poll_s)


class SnapshotFollower:
    def __init__(self, access: StoreAccess, root: Path, poll_s: float) -> None:
        self._access = access
        self._root = root
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="snapshot-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.refresh()
            except Exception:  # a snapshot that cannot be opened is skipped; the old one keeps serving
                log.exception("could not swap in the new snapshot", extra={"root": str(self._root)})

    async def refresh(self) -> bool:
        """Swap in the current snapshot if it is newer than the one served; True when it swapped."""
        info = await asyncio.to_thread(current_snapshot, self._root)
        served = self._access.snapshot
        if info is None or (served is not None and info.name == served.name):
            return False
        store = await asyncio.to_thread(open_snapshot, info)
        await self._access.swap(store, info)
        log.info("snapshot swapped in", extra={"snapshot": info.name, "entries": len(store)})
        return True
