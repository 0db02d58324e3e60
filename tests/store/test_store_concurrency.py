"""Many threads search while others write; readers in other processes open alongside the writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from precog.store import IndexParams, Store, StoreError


def test_searches_from_many_threads_during_writes(store_path, make_entry, unit_vectors) -> None:
    """Writes include the switch from flat to HNSW (threshold 300) and tombstone compaction."""
    store = Store.open(store_path, index_params=IndexParams(hnsw_threshold=300), progress=False)
    fixed = [make_entry(scope="hot") for _ in range(200)]
    store.put_many(fixed)
    failures: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                for entry in fixed[:20]:
                    found = store.search("hot", entry.embedding, k=5)
                    assert found[0][0].id == entry.id and all(e.scope == "hot" for e, _ in found)
        except BaseException as exc:  # surfaced in the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(12):
            churn = [make_entry(scope="hot", vector=v) for v in unit_vectors(50)]
            store.put_many(churn)
            store.invalidate(ids=[e.id for e in churn[::2]])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[0]
    assert len(store) == 200 + 300
    assert store.stats()["index"]["hot"]["kind"] == "hnsw"
    assert store.verify().ok
    store.close()


def test_reader_process_alongside_a_writer_process(store_path: Path, make_entry) -> None:
    entries = [make_entry() for _ in range(10)]
    with Store.open(store_path, progress=False) as store:
        store.put_many(entries)
    holder = textwrap.dedent(
        """
        import sys
        from precog.store import Store
        store = Store.open(sys.argv[1], progress=False)
        print("holding", flush=True)
        sys.stdin.readline()
        store.close()
        """
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", holder, str(store_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert writer.stdout.readline().strip() == "holding"
        with Store.open(store_path, read_only=True, progress=False) as reader:
            assert len(reader) == 10
            hit = reader.search("scope-a", entries[3].embedding, k=1)[0][0]
            assert hit.id == entries[3].id
        with pytest.raises(StoreError, match="already open for writing"):
            Store.open(store_path, progress=False)
    finally:
        writer.communicate("\n", timeout=60)
    assert writer.returncode == 0
    with Store.open(store_path, progress=False) as store:
        assert len(store) == 10 and np.isfinite(store.stats()["bytes"]["db_on_disk"])
