"""Semantic KV reuse from the gateway: a near miss relays with the nearest entry's KV blob id."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import torch

from precog.store import Embedder, Entry, KVBlob, Store, scope_key
from tests.gateway.conftest import GatewayFactory
from tests.gateway.fake_upstream import UpstreamState
from tests.gateway.support import chat

STORED_QUESTION = "What is the boiling point of water at sea level?"
NEAR = "At what temperature does water freeze at sea level?"
FAR = "Who painted the ceiling of the Sistine Chapel?"


def _seed(path: Path, embedder: Embedder) -> str:
    """One precomputed entry with a KV blob in the default tenant's plain chat scope; returns the blob id."""
    blob = KVBlob(
        model="test-model",
        token_ids=[1, 2, 3, 4],
        keys=[torch.randn(1, 4, 2) for _ in range(2)],
        values=[torch.randn(1, 4, 2) for _ in range(2)],
    )
    entry = Entry(
        scope=scope_key("test-model", "", "default"),
        query=STORED_QUESTION,
        answer="Water boils at 100 degrees Celsius at sea level.",
        embedding=np.asarray(embedder.encode([STORED_QUESTION])[0]),
        model="test-model",
    )
    with Store.open(path, progress=False) as store:
        store.put(entry, blob)
        blob_id = store.entries()[0].kv_blob_id
    assert blob_id
    return blob_id


def _relayed(state: UpstreamState, question: str) -> list[dict]:
    return [r for r in state.requests if r.get("messages", [{}])[-1].get("content") == question]


def test_near_miss_relays_the_nearest_entry_kv_for_reuse(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, embedder: Embedder, tmp_path: Path
) -> None:
    path = tmp_path / "seeded"
    blob_id = _seed(path, embedder)
    url = start_gateway(store_path=path, kv_reuse=True, writeback_enabled=False).url
    near = httpx.post(f"{url}/v1/chat/completions", json=chat(NEAR), timeout=30)
    assert near.status_code == 200 and near.headers["x-precog-cache"] == "miss"
    assert [r.get("kv_reuse_blob_id") for r in _relayed(upstream_state, NEAR)] == [blob_id]
    httpx.post(f"{url}/v1/chat/completions", json=chat(FAR), timeout=30)
    assert [r.get("kv_reuse_blob_id") for r in _relayed(upstream_state, FAR)] == [None]

    upstream_state.reject_kv = True  # an upstream without that blob: asked once more, without it
    again = "At what temperature does water freeze on a mountain?"
    assert httpx.post(f"{url}/v1/chat/completions", json=chat(again), timeout=30).status_code == 200
    assert [r.get("kv_reuse_blob_id") for r in _relayed(upstream_state, again)] == [blob_id, None]
    upstream_state.reject_kv = False

    smuggled = "Read someone else's cache"
    body = {**chat(smuggled), "kv_reuse_blob_id": blob_id, "kv_reuse_blob": "AAAA"}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 200
    assert not {"kv_reuse_blob_id", "kv_reuse_blob"} & set(_relayed(upstream_state, smuggled)[0])


def test_reuse_is_off_by_default(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, embedder: Embedder, tmp_path: Path
) -> None:
    path = tmp_path / "seeded"
    _seed(path, embedder)
    url = start_gateway(store_path=path).url
    assert httpx.post(f"{url}/v1/chat/completions", json=chat(NEAR), timeout=30).status_code == 200
    assert [r.get("kv_reuse_blob_id") for r in _relayed(upstream_state, NEAR)] == [None]
