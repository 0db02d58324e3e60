"""Entries go in, come back complete, are found by exact text and by vector, and go away on delete."""

from __future__ import annotations

import numpy as np
import torch

from precog.store import Entry, KVBlob, Source, Store


def _blob(tokens: int = 5) -> KVBlob:
    return KVBlob(
        model="test-model",
        token_ids=list(range(tokens)),
        keys=[torch.randn(2, tokens, 8) for _ in range(3)],
        values=[torch.randn(2, tokens, 8) for _ in range(3)],
        rope={"theta": 10000.0},
    )


def test_put_get_round_trip_keeps_every_field(store: Store, make_entry) -> None:
    entry = make_entry(expires=None, meta={"chunk": "7"}, source=Source.WRITE_BACK)
    raw = entry.embedding.copy() * 3.0
    entry.embedding = raw
    entry_id = store.put(entry)
    got = store.get(entry_id)
    assert got is not None
    assert (got.id, got.scope, got.query, got.answer, got.model) == (
        entry.id,
        entry.scope,
        entry.query,
        entry.answer,
        entry.model,
    )
    assert got.source is Source.WRITE_BACK and got.meta == {"chunk": "7"} and got.created == entry.created
    assert np.isclose(np.linalg.norm(got.embedding), 1.0, atol=1e-5)
    np.testing.assert_allclose(got.embedding, raw / np.linalg.norm(raw), atol=1e-6)
    assert store.get("no-such-id") is None


def test_find_exact_uses_normalised_text_inside_the_scope(store: Store, make_entry) -> None:
    entry = make_entry(query="What is  the Capital of France?")
    store.put(entry)
    found = store.find_exact("scope-a", "what is the capital of france?")
    assert found is not None and found.id == entry.id
    assert store.find_exact("scope-a", "what is the capital of spain?") is None
    assert store.find_exact("scope-b", "What is  the Capital of France?") is None


def test_search_returns_nearest_first_with_cosine_scores(store: Store, make_entry, rng) -> None:
    entries = [make_entry() for _ in range(50)]
    store.put_many(entries)
    target = entries[17]
    noisy = target.embedding + 0.01 * rng.standard_normal(384).astype(np.float32)
    results = store.search("scope-a", noisy, k=5)
    assert results[0][0].id == target.id
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True) and len(results) == 5
    assert 0.9 < scores[0] <= 1.0001


def test_same_query_in_same_scope_replaces_the_older_entry(store: Store, make_entry) -> None:
    old = make_entry(query="How do I reset my password?")
    store.put(old)
    new = make_entry(query="how do i reset my PASSWORD?")
    store.put(new)
    assert store.get(old.id) is None
    assert store.find_exact("scope-a", "How do I reset my password?").id == new.id
    assert [e.id for e, _ in store.search("scope-a", old.embedding, k=10)] == [new.id]
    assert store.verify().ok


def test_blob_is_stored_with_its_entry_and_deleted_with_it(store: Store, make_entry) -> None:
    blob = _blob()
    entry = make_entry()
    store.put(entry, blob)
    assert entry.kv_blob_id is not None
    assert store.get(entry.id).kv_blob_id == entry.kv_blob_id
    back = store.get_blob(entry.kv_blob_id)
    assert back.token_ids == blob.token_ids and back.rope == blob.rope
    for mine, theirs in zip(back.keys + back.values, blob.keys + blob.values, strict=True):
        assert torch.equal(mine, theirs)
    assert store.delete(entry.id) is True
    assert store.delete(entry.id) is False
    try:
        store.get_blob(entry.kv_blob_id)
        raise AssertionError("blob of a deleted entry is still there")
    except KeyError:
        pass


def test_standalone_blob_survives_compaction_until_deleted(store: Store) -> None:
    blob_id = store.put_blob(_blob())
    assert store.compact()["orphan_blobs"] == 0
    assert store.get_blob(blob_id).token_ids == list(range(5))
    assert store.delete_blob(blob_id) is True
    assert store.delete_blob(blob_id) is False


def test_record_hit_counts(store: Store, make_entry) -> None:
    entry = make_entry()
    store.put(entry)
    for _ in range(3):
        assert store.record_hit(entry.id)
    assert store.get(entry.id).hits == 3
    assert store.search("scope-a", entry.embedding, k=1)[0][0].hits == 3
    assert store.entries()[0].hits == 3 and store.entries(scope="scope-a")[0].hits == 3
    assert store.record_hit("missing") is False


def test_entries_pages_and_filters(store: Store, make_entry) -> None:
    store.put_many([make_entry(query=f"alpha {i}") for i in range(7)])
    store.put_many([make_entry(scope="scope-b", query=f"beta {i}") for i in range(3)])
    assert len(store.entries(limit=100)) == 10
    assert len(store.entries(scope="scope-b")) == 3
    assert {e.query for e in store.entries(text="ALPHA")} == {f"alpha {i}" for i in range(7)}
    first, second = store.entries(limit=4), store.entries(limit=4, offset=4)
    assert not {e.id for e in first} & {e.id for e in second} and len(second) == 4


def test_reopen_keeps_everything(store_path, make_entry) -> None:
    with Store.open(store_path, progress=False) as store:
        entries = [make_entry(scope=f"s{i % 3}") for i in range(30)]
        store.put_many(entries)
    with Store.open(store_path, progress=False) as store:
        assert len(store) == 30
        info = store.index_info()
        assert {scope: v["vectors"] for scope, v in info["scopes"].items()} == {"s0": 10, "s1": 10, "s2": 10}
        assert info["memory_bytes"] >= 30 * 384 * 4
        for entry in entries:
            assert store.search(entry.scope, entry.embedding, k=1)[0][0].id == entry.id
        assert store.verify().ok


def test_read_only_open_alongside_a_writer(store: Store, store_path, make_entry) -> None:
    store.put(make_entry())
    with Store.open(store_path, read_only=True, progress=False) as reader:
        assert len(reader.entries()) == 1
        assert isinstance(reader.entries()[0], Entry)


def test_completion_tokens_is_a_field_and_old_records_still_give_it(store: Store, make_entry) -> None:
    new = make_entry(completion_tokens=42)
    got = store.get(store.put(new))
    assert got is not None and got.completion_tokens == 42 and "completion_tokens" not in got.meta
    # A record from before the field kept the count as a string in meta; it reads back as the field.
    old = make_entry(meta={"completion_tokens": "12", "chunk": "3"})
    got = store.get(store.put(old))
    assert got is not None and got.completion_tokens == 12 and got.meta == {"chunk": "3"}
