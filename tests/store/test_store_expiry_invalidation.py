"""TTL expiry, the four invalidation filters, and compaction of what expired."""

from __future__ import annotations

import time

import pytest

from precog.store import Store


def test_expired_entries_are_not_served_but_listed_until_compacted(store: Store, make_entry) -> None:
    expired = make_entry(query="old news", expires=time.time() - 1)
    live = make_entry(query="fresh news", expires=time.time() + 3600)
    forever = make_entry(query="timeless")
    store.put_many([expired, live, forever])
    assert store.find_exact("scope-a", "old news") is None
    assert store.find_exact("scope-a", "fresh news").id == live.id
    ids = [e.id for e, _ in store.search("scope-a", expired.embedding, k=10)]
    assert expired.id not in ids and set(ids) == {live.id, forever.id}
    assert store.get(expired.id).expired()
    assert store.stats()["expired"] == 1
    assert store.compact()["expired_entries"] == 1
    assert store.get(expired.id) is None and store.stats()["expired"] == 0
    assert store.verify().ok


def test_search_fills_k_even_when_the_nearest_have_expired(store: Store, make_entry, rng) -> None:
    target = make_entry(query="target")
    near = [
        make_entry(vector=target.embedding, query=f"near {i}", expires=time.time() - 1) for i in range(20)
    ]
    far = [make_entry(query=f"far {i}") for i in range(30)]
    store.put_many([target, *near, *far])
    results = store.search("scope-a", target.embedding, k=5)
    assert len(results) == 5 and results[0][0].id == target.id
    assert not any(e.expired() for e, _ in results)


def test_invalidate_by_ids_scope_substring_and_age(store: Store, make_entry) -> None:
    old = make_entry(query="refund policy for shoes", created=time.time() - 7200)
    shoes = make_entry(query="Shoe sizes in Europe")
    other = make_entry(scope="scope-b", query="refund policy for hats")
    spare = [make_entry(scope="scope-b") for _ in range(3)]
    store.put_many([old, shoes, other, *spare])

    assert store.invalidate(older_than=3600) == 1 and store.get(old.id) is None
    assert store.invalidate(substring="REFUND POLICY", scope="scope-a") == 0
    assert store.invalidate(substring="refund  policy") == 1 and store.get(other.id) is None
    assert store.invalidate(ids=[shoes.id, "never-existed"]) == 1
    assert store.invalidate(scope="scope-b") == 3
    assert len(store) == 0 and store.entries() == []
    assert store.search("scope-b", spare[0].embedding) == []
    assert store.verify().ok


def test_invalidate_needs_a_filter(store: Store) -> None:
    with pytest.raises(ValueError, match="at least one"):
        store.invalidate()
    with pytest.raises(ValueError, match="older_than"):
        store.invalidate(older_than=-5)
    with pytest.raises(ValueError, match="single string"):
        store.invalidate(ids="abc")
    with pytest.raises(ValueError, match="some text"):
        store.invalidate(substring="   ")


def test_invalidated_entries_stay_gone_after_reopen(store_path, make_entry) -> None:
    with Store.open(store_path, progress=False) as store:
        entries = [make_entry() for _ in range(10)]
        store.put_many(entries)
        store.invalidate(ids=[e.id for e in entries[:4]])
    with Store.open(store_path, progress=False) as store:
        assert len(store) == 6
        hits = store.search("scope-a", entries[0].embedding, k=10)
        assert {e.id for e, _ in hits} == {e.id for e in entries[4:]}
