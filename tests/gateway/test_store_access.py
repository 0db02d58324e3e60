"""A replica's store access across a snapshot swap: real RocksDB + FAISS snapshots, published and opened
the way the store writer and the snapshot follower do it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from precog.gateway.replication import open_snapshot
from precog.gateway.shared import Invalidation
from precog.gateway.store_access import StoreAccess
from precog.store import MODEL_DIM, Entry, Store, publish_snapshot

SCOPE = "scope"
QUESTION = "Who discovered penicillin?"


def _entry(question: str) -> Entry:
    vector = np.random.default_rng(0).standard_normal(MODEL_DIM).astype(np.float32)
    return Entry(scope=SCOPE, query=question, answer="Alexander Fleming.", embedding=vector, model="m")


def _delay_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Hold `store.find_exact` until released, so that a swap can land while it runs."""
    started, release = threading.Event(), threading.Event()
    find_exact = store.find_exact

    def held(scope: str, query: str) -> Entry | None:
        started.set()
        release.wait(10)
        return find_exact(scope, query)

    monkeypatch.setattr(store, "find_exact", held)
    return started, release


async def test_a_read_begun_before_a_swap_stays_masked_by_the_snapshot_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-back's duplicate check read the old snapshot while the new one (without the invalidated
    entry) was swapped in: the old entry came back unmasked and the fresh answer was never stored."""
    snapshots = tmp_path / "snapshots"
    stored = _entry(QUESTION)
    with Store.open(tmp_path / "writer", progress=False) as writer:
        writer.put(stored)
        before = publish_snapshot(writer, snapshots)
        invalidation = Invalidation(substring="penicillin", at=time.time())
        writer.invalidate(substring="penicillin")
        after = publish_snapshot(writer, snapshots, {"invalidations_applied": "5-0"})

    access = StoreAccess(open_snapshot(before), snapshot=before)
    try:
        access.mask(invalidation, "5-0")
        assert access.masked(stored)
        assert await access.find_exact(SCOPE, QUESTION) is None
        started, release = _delay_reads(access.store, monkeypatch)
        read = asyncio.create_task(access.find_exact(SCOPE, QUESTION))
        await asyncio.to_thread(started.wait, 10)
        swap = asyncio.create_task(access.swap(open_snapshot(after), after))
        await asyncio.sleep(0)
        assert not access.masked(stored), "the new snapshot includes the invalidation: no mask left"
        release.set()
        assert await read is None
        await swap
        assert await access.find_exact(SCOPE, QUESTION) is None
    finally:
        access.close()


async def test_masks_the_new_snapshot_does_not_include_carry_over(tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    with Store.open(tmp_path / "writer", progress=False) as writer:
        writer.put(_entry(QUESTION))
        first = publish_snapshot(writer, snapshots, {"invalidations_applied": "3-0"})
        second = publish_snapshot(writer, snapshots, {"invalidations_applied": "4-0"})
    access = StoreAccess(open_snapshot(first), snapshot=first)
    try:
        access.mask(Invalidation(substring="penicillin", at=time.time()), "5-0")
        await access.swap(open_snapshot(second), second)
        assert await access.find_exact(SCOPE, QUESTION) is None
        assert await access.entries(SCOPE, limit=10, offset=0, text=None) == []
        later = _entry(QUESTION)
        assert not access.masked(later), "an answer written after the invalidation is not hidden"
    finally:
        access.close()
