"""Bad input gets a clear error and leaves the store exactly as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from precog.store import EmbeddingMismatchError, NotAStoreError, ReadOnlyStoreError, Store


def _snapshot(store: Store) -> tuple[int, bool, list[str]]:
    return len(store), store.verify().ok, sorted(e.id for e in store.entries(limit=1000))


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        (np.ones(383, dtype=np.float32), "shape"),
        (np.ones((2, 384), dtype=np.float32), "shape"),
        (np.full(384, np.nan, dtype=np.float32), "NaN"),
        (np.array([np.inf] + [0.0] * 383, dtype=np.float32), "NaN or infinite"),
        (np.zeros(384, dtype=np.float32), "zero vector"),
    ],
)
def test_bad_vectors_are_rejected_before_anything_is_written(
    store: Store, make_entry, vector, message
) -> None:
    store.put(make_entry())
    before = _snapshot(store)
    with pytest.raises(ValueError, match=message):
        store.put(make_entry(vector=vector))
    with pytest.raises(ValueError, match=message):
        store.put_many([make_entry(), make_entry(vector=vector)])
    with pytest.raises(ValueError, match=message):
        store.search("scope-a", vector)
    assert _snapshot(store) == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": ""}, "scope"),
        ({"query": "   "}, "query"),
        ({"id": ""}, "entry id"),
        ({"id": "x" * 500}, "entry id"),
        ({"expires": float("nan")}, "expires"),
        ({"expires": "tomorrow"}, "expires"),
        ({"source": "guess"}, "source"),
        ({"meta": {"n": 1}}, "meta"),
        ({"completion_tokens": -1}, "completion_tokens"),
        ({"completion_tokens": "12"}, "completion_tokens"),
    ],
)
def test_bad_entry_fields_are_rejected(store: Store, make_entry, fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        store.put(make_entry(**fields))
    assert len(store) == 0


def test_put_many_rejects_duplicates_within_one_call(store: Store, make_entry) -> None:
    with pytest.raises(ValueError, match="same"):
        store.put_many([make_entry(query="same words"), make_entry(query="Same  WORDS")])
    assert len(store) == 0


def test_other_embedding_model_or_dim_is_refused(store_path: Path, make_entry) -> None:
    with Store.open(store_path, progress=False) as store:
        store.put(make_entry())
    with pytest.raises(EmbeddingMismatchError, match="all-MiniLM-L6-v2"):
        Store.open(store_path, embedding_model="bge-small-en", progress=False)
    with pytest.raises(EmbeddingMismatchError, match="dim 384"):
        Store.open(store_path, dim=768, progress=False)
    with Store.open(store_path, progress=False) as store:
        assert len(store) == 1 and store.verify().ok


def test_paths_that_are_not_stores(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(NotAStoreError, match="is a file"):
        Store.open(tmp_path / "file.txt")
    with pytest.raises(NotAStoreError, match="not a precog store"):
        Store.open(tmp_path)
    assert (tmp_path / "file.txt").read_text() == "hello" and not (tmp_path / "db").exists()
    with pytest.raises(NotAStoreError, match="no store"):
        Store.open(tmp_path / "missing", create=False)
    with pytest.raises(NotAStoreError, match="no store"):
        Store.open(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_read_only_store_refuses_writes(store: Store, store_path: Path, make_entry) -> None:
    store.put(make_entry())
    with Store.open(store_path, read_only=True, progress=False) as reader:
        for write in (
            lambda: reader.put(make_entry()),
            lambda: reader.delete("x"),
            lambda: reader.record_hit("x"),
            lambda: reader.invalidate(scope="scope-a"),
            reader.compact,
        ):
            with pytest.raises(ReadOnlyStoreError):
                write()
        assert len(reader) == 1


def test_closed_store_says_so(store_path: Path) -> None:
    store = Store.open(store_path, progress=False)
    store.close()
    store.close()
    with pytest.raises(Exception, match="closed"):
        store.get("x")
