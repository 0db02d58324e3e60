"""The vector index is derived data: behind the records, it catches up from the change log; missing,
stale beyond the log or corrupt, it is rebuilt from the records on open."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from precog.store import IndexParams, Store

STORE_LOGGER = "precog.store"


def _fill(path: Path, make_entry, n: int = 40) -> list:
    entries = [make_entry(scope=f"s{i % 4}") for i in range(n)]
    with Store.open(path, progress=False) as store:
        store.put_many(entries)
    return entries


def _assert_searchable(path: Path, entries: list, caplog, reason: str | None) -> None:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=STORE_LOGGER), Store.open(path, progress=False) as store:
        assert len(store) == len(entries)
        for entry in entries:
            assert store.search(entry.scope, entry.embedding, k=1)[0][0].id == entry.id
        assert store.verify().ok
    rebuilt = [r for r in caplog.records if r.getMessage() == "rebuilding vector index"]
    if reason is None:
        assert not rebuilt
    else:
        assert rebuilt and reason in rebuilt[0].reason


def test_saved_index_is_loaded_not_rebuilt(store_path, make_entry, caplog) -> None:
    entries = _fill(store_path, make_entry)
    _assert_searchable(store_path, entries, caplog, reason=None)


def test_missing_index_is_rebuilt(store_path, make_entry, caplog) -> None:
    entries = _fill(store_path, make_entry)
    shutil.rmtree(store_path / "index")
    _assert_searchable(store_path, entries, caplog, reason="no saved index")
    _assert_searchable(store_path, entries, caplog, reason=None)


def test_stale_index_is_rebuilt(store_path, make_entry, caplog, tmp_path) -> None:
    entries = _fill(store_path, make_entry)
    shutil.copytree(store_path / "index", tmp_path / "old-index")
    with Store.open(store_path, progress=False) as store:
        extra = make_entry(scope="s0")
        store.put(extra)
        store.delete(entries[0].id)
    shutil.rmtree(store_path / "index")
    shutil.copytree(tmp_path / "old-index", store_path / "index")
    _assert_searchable(store_path, [*entries[1:], extra], caplog, reason="stale")


@pytest.mark.parametrize("damage", ["flip-index-byte", "truncate-index", "garbage-manifest", "wrong-count"])
def test_corrupt_index_is_rebuilt(store_path, make_entry, caplog, damage) -> None:
    entries = _fill(store_path, make_entry)
    index_dir = store_path / "index"
    scope_file = sorted(index_dir.glob("*.idx"))[0]
    if damage == "flip-index-byte":
        data = bytearray(scope_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        scope_file.write_bytes(bytes(data))
    elif damage == "truncate-index":
        scope_file.write_bytes(scope_file.read_bytes()[:100])
    elif damage == "garbage-manifest":
        (index_dir / "manifest.json").write_text("{not json")
    else:
        manifest = json.loads((index_dir / "manifest.json").read_text())
        next(iter(manifest["scopes"].values()))["count"] += 1
        (index_dir / "manifest.json").write_text(json.dumps(manifest))
    reason = {"garbage-manifest": "unreadable", "wrong-count": "wrong number"}.get(damage, "corrupt")
    _assert_searchable(store_path, entries, caplog, reason=reason)


def test_scope_switches_to_hnsw_and_survives_reopen(store_path, unit_vectors) -> None:
    from precog.store import Entry

    params = IndexParams(hnsw_threshold=300, min_tombstones_to_compact=50)
    vectors = unit_vectors(600)
    entries = [
        Entry(scope="big", query=f"q{i}", answer="a", embedding=v, model="m") for i, v in enumerate(vectors)
    ]
    with Store.open(store_path, index_params=params, progress=False) as store:
        store.put_many(entries[:250])
        assert store.stats()["index"]["big"]["kind"] == "flat"
        store.put_many(entries[250:])
        assert store.stats()["index"]["big"]["kind"] == "hnsw"
        store.invalidate(ids=[e.id for e in entries[:400]])
        index_stats = store.stats()["index"]["big"]
        assert (
            index_stats["vectors"] == 200 and index_stats["tombstones"] == 0 and index_stats["kind"] == "flat"
        )
    with Store.open(store_path, index_params=params, progress=False) as store:
        found = store.search("big", vectors[500], k=10)
        assert found[0][0].id == entries[500].id
        assert all(int(e.query[1:]) >= 400 for e, _ in found)
        assert store.verify().ok


def test_tombstones_are_never_returned(store: Store, make_entry) -> None:
    entries = [make_entry() for _ in range(30)]
    store.put_many(entries)
    for entry in entries[::2]:
        store.delete(entry.id)
    for entry in entries:
        ids = [e.id for e, _ in store.search("scope-a", entry.embedding, k=30)]
        assert len(ids) == 15 and not set(ids) & {e.id for e in entries[::2]}


def test_rebuild_index_on_demand(store: Store, make_entry) -> None:
    entries = [make_entry() for _ in range(20)]
    store.put_many(entries)
    store.rebuild_index()
    assert len(store) == 20
    assert np.isclose(store.search("scope-a", entries[3].embedding, k=1)[0][1], 1.0, atol=1e-5)


def test_read_only_store_builds_its_index_only_when_needed_and_writes_nothing(
    store_path, make_entry, caplog
) -> None:
    entries = _fill(store_path, make_entry)
    shutil.rmtree(store_path / "index")
    with (
        caplog.at_level(logging.INFO, logger=STORE_LOGGER),
        Store.open(store_path, read_only=True, progress=False) as reader,
    ):
        assert len(reader.entries(limit=100)) == len(entries)
        assert not [r for r in caplog.records if r.getMessage() == "rebuilding vector index"]
        assert reader.search(entries[5].scope, entries[5].embedding, k=1)[0][0].id == entries[5].id
        assert [r for r in caplog.records if r.getMessage() == "rebuilding vector index"]
    assert not (store_path / "index").exists()


def test_index_behind_the_records_catches_up_from_the_change_log(store_path, make_entry, caplog) -> None:
    """A writer killed after puts, deletes, a replacement and a scope move: the saved index is behind,
    and the next open replays the change log instead of rebuilding."""
    entries = _fill(store_path, make_entry)
    killed_writer = textwrap.dedent(
        """
        import os, signal, sys
        import numpy as np
        from precog.store import Entry, Store
        store = Store.open(sys.argv[1], progress=False)
        ids = [e.id for e in store.entries(limit=1000)]
        rng = np.random.default_rng(5)
        for i in range(5):
            store.put(Entry(scope="s9", query=f"new {i}", answer="a", model="m", id=f"new-{i}",
                            embedding=rng.standard_normal(384)))
        store.delete("new-0")
        store.delete(sorted(ids)[0])
        moved = store.get(sorted(ids)[1])
        moved.scope = "s9"
        store.put(moved)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run(
        [sys.executable, "-c", killed_writer, str(store_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        timeout=120,
    )
    gone, moved = sorted(e.id for e in entries)[:2]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=STORE_LOGGER), Store.open(store_path, progress=False) as store:
        loaded = [r for r in caplog.records if r.getMessage() == "vector index loaded"]
        assert loaded and loaded[0].caught_up_epochs == 8
        assert not [r for r in caplog.records if r.getMessage() == "rebuilding vector index"]
        assert len(store) == len(entries) - 1 + 4
        assert store.get(gone) is None and store.get("new-0") is None
        moved_entry = store.get(moved)
        assert store.search("s9", moved_entry.embedding, k=1)[0][0].id == moved
        original_scope = next(e.scope for e in entries if e.id == moved)
        assert moved not in {e.id for e, _ in store.search(original_scope, moved_entry.embedding, k=50)}
        report = store.verify()
        assert report.ok, report.summary()
