"""A search only ever sees its own scope, and a small scope keeps its recall beside huge ones."""

from __future__ import annotations

import numpy as np

from precog.store import Entry, IndexParams, Store, Turn, scope_key


def test_an_entry_of_scope_a_is_never_returned_for_scope_b(store: Store, make_entry) -> None:
    tenant_a = scope_key("m", "You are helpful.", "tenant-a")
    tenant_b = scope_key("m", "You are helpful.", "tenant-b")
    after_turn = scope_key(
        "m", "You are helpful.", "tenant-a", [Turn("user", "hi"), Turn("assistant", "hey")]
    )
    assert len({tenant_a, tenant_b, after_turn}) == 3
    secret = make_entry(scope=tenant_a, query="What is my account balance?")
    store.put(secret)
    store.put_many([make_entry(scope=tenant_b) for _ in range(20)])
    for scope in (tenant_b, after_turn):
        found = store.search(scope, secret.embedding, k=50)
        assert secret.id not in {e.id for e, _ in found}
        assert all(e.scope == scope for e, _ in found)
        assert store.find_exact(scope, secret.query) is None
    assert store.search(tenant_a, secret.embedding, k=1)[0][0].id == secret.id
    assert {e.scope for e in store.entries(scope=tenant_b, limit=100)} == {tenant_b}


def test_small_scope_recall_holds_beside_scopes_100x_larger(tmp_path, rng, unit_vectors) -> None:
    """30 entries in the small scope; 3,000 (HNSW) in each big one, with near-copies of the small ones."""
    store = Store.open(tmp_path / "store", index_params=IndexParams(hnsw_threshold=1000), progress=False)
    small = unit_vectors(30)
    store.put_many(
        [Entry(scope="small", query=f"s{i}", answer="a", embedding=v, model="m") for i, v in enumerate(small)]
    )
    for big in ("big-1", "big-2"):
        vectors = unit_vectors(3000)
        vectors[:30] = small + 0.01 * rng.standard_normal(small.shape).astype(np.float32)
        store.put_many(
            [
                Entry(scope=big, query=f"{big}-{i}", answer="a", embedding=v, model="m")
                for i, v in enumerate(vectors)
            ]
        )
    queries = small + 0.02 * rng.standard_normal(small.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ small.T), axis=1)[:, :10]
    recall = []
    for query, truth in zip(queries, exact, strict=True):
        found = store.search("small", query, k=10)
        assert all(e.scope == "small" for e, _ in found)
        recall.append(len({e.query for e, _ in found} & {f"s{i}" for i in truth}) / 10)
    assert float(np.mean(recall)) == 1.0
    assert store.stats()["index"]["big-1"]["kind"] == "hnsw"
    store.close()
