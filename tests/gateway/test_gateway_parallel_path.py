"""StorInfer's parallel path, and the KV blob reference sent with the turn after a hit."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from precog.store import Embedder, Entry, KVBlob, Store, scope_key
from tests.gateway.conftest import GatewayFactory
from tests.gateway.fake_upstream import UpstreamState
from tests.gateway.support import chat

QUESTION = "What is the boiling point of water at sea level?"
STORED = "Water boils at 100 degrees Celsius at sea level."


def _seed(path: Path, embedder: Embedder, with_blob: bool = False) -> str:
    """A precomputed entry for QUESTION in the default tenant's plain chat scope."""
    blob = None
    if with_blob:
        keys = [torch.randn(1, 4, 2) for _ in range(2)]
        values = [torch.randn(1, 4, 2) for _ in range(2)]
        blob = KVBlob(model="test-model", token_ids=[1, 2, 3, 4], keys=keys, values=values)
    entry = Entry(
        scope=scope_key("test-model", "", "default"),
        query=QUESTION,
        answer=STORED,
        embedding=np.asarray(embedder.encode([QUESTION])[0]),
        model="test-model",
    )
    with Store.open(path, progress=False) as store:
        store.put(entry, blob)
    return entry.id


FOLLOW_UP = {
    "model": "test-model",
    "temperature": 0,
    "messages": [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": STORED},
        {"role": "user", "content": "And on Mount Everest?"},
    ],
}


def _follow_up_after_a_hit(url: str, upstream_state: UpstreamState) -> list[dict]:
    """Ask the stored question (a hit), then FOLLOW_UP; return the upstream's copies of FOLLOW_UP."""
    hit = httpx.post(f"{url}/v1/chat/completions", json=chat(QUESTION), timeout=30)
    assert hit.headers["x-precog-cache"] == "hit"
    assert httpx.post(f"{url}/v1/chat/completions", json=FOLLOW_UP, timeout=30).status_code == 200
    return [r for r in upstream_state.requests if r["messages"][-1]["content"] == "And on Mount Everest?"]


def _asked(state: UpstreamState, question: str) -> bool:
    return any(r.get("messages", [{}])[-1].get("content") == question for r in state.requests)


@pytest.mark.parametrize(
    ("settings", "upstream_started"),
    [
        ({"parallel_path": True, "parallel_delay_ms": 0}, True),
        ({"parallel_path": True, "parallel_delay_ms": 2000}, False),
        ({"parallel_path": False}, False),
    ],
)
def test_hit_cancels_or_never_starts_the_upstream_request(
    start_gateway: GatewayFactory,
    upstream_state: UpstreamState,
    embedder: Embedder,
    tmp_path: Path,
    settings: dict,
    upstream_started: bool,
) -> None:
    path = tmp_path / "seeded"
    _seed(path, embedder)
    url = start_gateway(store_path=path, **settings).url
    upstream_state.delay_s = 3.0
    started = time.monotonic()
    reworded = QUESTION.rstrip("?")  # not the exact text: the semantic tier takes long enough to overlap
    response = httpx.post(f"{url}/v1/chat/completions", json=chat(reworded), timeout=30)
    assert response.headers["x-precog-cache"] == "hit", response.headers["x-precog-cache-reason"]
    assert response.headers["x-precog-tier"] == "semantic"
    assert response.json()["choices"][0]["message"]["content"] == STORED
    assert time.monotonic() - started < 2.0
    time.sleep(0.3)
    assert _asked(upstream_state, reworded) is upstream_started


def test_miss_with_a_delay_starts_the_upstream_as_soon_as_the_lookup_misses(
    start_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    url = start_gateway(parallel_delay_ms=5000).url
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/chat/completions", json=chat("Unseen question"), timeout=30)
    assert response.headers["x-precog-cache"] == "miss"
    assert time.monotonic() - started < 4.0


def test_next_turn_after_a_hit_carries_the_stored_kv_blob(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, embedder: Embedder, tmp_path: Path
) -> None:
    path = tmp_path / "seeded-kv"
    _seed(path, embedder, with_blob=True)
    with Store.open(path, progress=False) as store:
        blob_id = store.entries()[0].kv_blob_id
    assert blob_id
    url = start_gateway(store_path=path).url
    relayed = _follow_up_after_a_hit(url, upstream_state)
    assert relayed and relayed[0]["kv_blob_id"] == blob_id

    upstream_state.reject_kv = True
    refused = {
        **FOLLOW_UP,
        "messages": [*FOLLOW_UP["messages"][:-1], {"role": "user", "content": "And in Denver?"}],
    }
    answered = httpx.post(f"{url}/v1/chat/completions", json=refused, timeout=30)
    assert answered.status_code == 200, answered.text
    relayed = [r for r in upstream_state.requests if r["messages"][-1]["content"] == "And in Denver?"]
    assert [r.get("kv_blob_id") for r in relayed] == [blob_id, None]
    upstream_state.reject_kv = False

    other_history = {
        **FOLLOW_UP,
        "messages": [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "Something else."},
            {"role": "user", "content": "And on Mont Blanc?"},
        ],
    }
    httpx.post(f"{url}/v1/chat/completions", json=other_history, timeout=30)
    relayed = [r for r in upstream_state.requests if r["messages"][-1]["content"] == "And on Mont Blanc?"]
    assert relayed and "kv_blob_id" not in relayed[0]

    smuggled = {**chat("Read someone else's cache"), "kv_blob_id": blob_id, "kv_blob": "AAAA"}
    assert httpx.post(f"{url}/v1/chat/completions", json=smuggled, timeout=30).status_code == 200
    relayed = [
        r
        for r in upstream_state.requests
        if r["messages"][-1]["content"] == smuggled["messages"][-1]["content"]
    ]
    assert relayed and not {"kv_blob_id", "kv_blob"} & set(relayed[0])


def test_without_upstream_kv_import_a_follow_up_never_names_a_blob(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, embedder: Embedder, tmp_path: Path
) -> None:
    """In front of vLLM or SGLang (deploy/profiles/external-upstream.toml) kv_blob_id means nothing."""
    path = tmp_path / "seeded-kv-off"
    _seed(path, embedder, with_blob=True)
    url = start_gateway(store_path=path, upstream_kv_import=False).url
    relayed = _follow_up_after_a_hit(url, upstream_state)
    assert len(relayed) == 1 and "kv_blob_id" not in relayed[0]


def test_an_upstream_billing_per_token_never_sees_a_hit_and_its_spend_is_counted(
    start_gateway: GatewayFactory, upstream_state: UpstreamState, embedder: Embedder, tmp_path: Path
) -> None:
    path = tmp_path / "seeded-billed"
    _seed(path, embedder)
    url = start_gateway(store_path=path, upstream_bills_per_token=True).url
    upstream_state.delay_s = 0.2
    rewordings = [QUESTION.rstrip("?"), QUESTION.lower(), QUESTION.upper(), f"  {QUESTION}  "]
    for n in range(12):
        reworded = rewordings[n % len(rewordings)]
        response = httpx.post(f"{url}/v1/chat/completions", json=chat(reworded, temperature=1.0), timeout=30)
        assert response.headers["x-precog-cache"] == "hit", response.headers["x-precog-cache-reason"]
    time.sleep(0.3)
    assert upstream_state.requests == []

    started = time.monotonic()
    miss = httpx.post(f"{url}/v1/chat/completions", json=chat("An unseen question"), timeout=30)
    assert miss.headers["x-precog-cache"] == "miss"
    assert time.monotonic() - started < 2.0
    usage = miss.json()["usage"]
    spent = httpx.get(f"{url}/admin/stats", timeout=10).json()["upstream_tokens"]
    assert spent == {"prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"]}
