"""KV export over HTTP, and KV import on a request: the imported prefix gives the tokens of a cold run.

Export runs on the session's server; import runs on a second server whose engine has no prefix cache,
so the prompt's KV there can only come from the imported blob (the way a precomputed blob is used).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from precog.backend import Engine, EngineConfig
from precog.backend.server.kv_source import REOPEN_INTERVAL_S
from precog.store import KVBlob, Store
from tests.backend.conftest import TEST_ENGINE, serving, wait_for_idle

pytestmark = pytest.mark.slow

SYSTEM = (
    "You are the help desk of the Riverside public library. Opening hours: Monday to Friday 9:00 to "
    "19:00, Saturday 10:00 to 16:00, closed on Sunday. Members may borrow up to twelve items for three "
    "weeks and renew them twice online. Late returns cost twenty cents a day per item. The reading room "
    "is on the second floor; the children's section is on the ground floor next to the cafe. Answer in "
    "one short sentence."
)
MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "When are you open on Saturday?"},
]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kv") / "store"
    Store.open(path, progress=False).close()
    return path


@pytest.fixture(scope="module")
def cold_engine(model_dir: Path) -> Engine:
    config = {**TEST_ENGINE, "num_kv_blocks": 128, "max_num_seqs": 8}
    return Engine(EngineConfig(model_dir=model_dir, num_threads=1, enable_prefix_caching=False, **config))


@pytest.fixture(scope="module")
def cold_url(cold_engine: Engine, store_path: Path) -> Iterator[str]:
    with serving(cold_engine, store_path=store_path) as url:
        yield url


def export(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/kv/export", json=body, timeout=120)


def ask(url: str, model: str, **extra: Any) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": 24,
        "temperature": 0,
        "logprobs": True,
        **extra,
    }
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


def token_logprobs(reply: dict[str, Any]) -> list[float]:
    return [t["logprob"] for t in reply["choices"][0]["logprobs"]["content"]]


def test_export_is_a_store_blob_of_the_prompt(server_url: str, engine: Engine) -> None:
    response = export(server_url, {"model": engine.model_name, "messages": MESSAGES})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    blob = KVBlob.from_bytes(response.content)
    ids = ask_ids(engine, MESSAGES)
    assert blob.token_ids == ids
    assert int(response.headers["x-precog-kv-tokens"]) == len(ids)
    assert response.headers["x-precog-model"] == blob.model == engine.model_name
    assert blob.num_layers == engine.spec.num_layers
    assert tuple(blob.keys[0].shape) == (engine.spec.num_kv_heads, len(ids), engine.spec.head_dim)
    by_ids = KVBlob.from_bytes(export(server_url, {"prompt_token_ids": ids}).content)
    assert by_ids.token_ids == ids
    # The second export takes the full blocks from the prefix cache and computes only the tail, whose
    # matmuls of another shape round differently on some CPUs: equal up to float32 rounding.
    for a, b in zip(blob.values, by_ids.values, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_imported_blob_gives_the_cold_run_tokens(
    server_url: str, cold_url: str, engine: Engine, cold_engine: Engine
) -> None:
    cold = ask(cold_url, cold_engine.model_name)
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    blob = export(server_url, {"messages": MESSAGES}).content
    warm = ask(cold_url, cold_engine.model_name, kv_blob=base64.b64encode(blob).decode())
    assert warm["choices"][0]["message"]["content"] == cold["choices"][0]["message"]["content"]
    # Only the last prompt token is recomputed (its logits start the answer); the rest came from the blob.
    prompt_tokens = warm["usage"]["prompt_tokens"]
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] == prompt_tokens - 1
    assert token_logprobs(warm) == pytest.approx(token_logprobs(cold), abs=1e-3)
    wait_for_idle(cold_engine)


def test_blob_by_id_from_the_store_written_after_start(
    server_url: str, cold_url: str, store_path: Path
) -> None:
    model = httpx.get(f"{cold_url}/v1/models").json()["data"][0]["id"]
    missing = httpx.post(
        f"{cold_url}/v1/chat/completions", json={"model": model, "messages": MESSAGES, "kv_blob_id": "nope"}
    )
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "kv_blob_not_found"
    blob = KVBlob.from_bytes(export(server_url, {"messages": MESSAGES}).content)
    with Store.open(store_path, progress=False) as store:
        blob_id = store.put_blob(blob)
    time.sleep(REOPEN_INTERVAL_S)  # the server reopens its read-only view at most this often
    warm = ask(cold_url, model, kv_blob_id=blob_id)
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] == len(blob.token_ids) - 1
    assert (
        warm["choices"][0]["message"]["content"] == ask(cold_url, model)["choices"][0]["message"]["content"]
    )


def test_partly_matching_blob_imports_the_shared_prefix(
    server_url: str, cold_url: str, cold_engine: Engine
) -> None:
    """A blob of the same system prompt but another question: the system part skips prefill."""
    other = [MESSAGES[0], {"role": "user", "content": "Can I renew a book online?"}]
    blob = KVBlob.from_bytes(export(server_url, {"messages": other}).content)
    cold = ask(cold_url, cold_engine.model_name)
    warm = ask(cold_url, cold_engine.model_name, kv_blob=base64.b64encode(blob.to_bytes()).decode())
    prompt = ask_ids(cold_engine, MESSAGES)
    shared = next(i for i, (a, b) in enumerate(zip(blob.token_ids, prompt, strict=False)) if a != b)
    assert shared > 100  # the whole system prompt
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] == shared
    assert warm["choices"][0]["message"]["content"] == cold["choices"][0]["message"]["content"]
    unrelated = KVBlob.from_bytes(export(server_url, {"prompt": "Something else entirely."}).content)
    none_shared = ask(
        cold_url, cold_engine.model_name, kv_blob=base64.b64encode(unrelated.to_bytes()).decode()
    )
    assert none_shared["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert none_shared["choices"][0]["message"]["content"] == cold["choices"][0]["message"]["content"]


def ask_ids(engine: Engine, messages: list[dict[str, str]]) -> list[int]:
    text = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(engine.tokenizer(text, add_special_tokens=False).input_ids)


def _error(response: httpx.Response) -> tuple[int, str | None, str | None]:
    error = response.json()["error"]
    return response.status_code, error["param"], error["code"]


def test_unusable_blobs_are_refused(server_url: str, cold_url: str, cold_engine: Engine) -> None:
    good = export(server_url, {"messages": MESSAGES}).content
    blob = KVBlob.from_bytes(good)
    blob.model = "another-model"
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    # the bytes, and what the error message must say about them
    cases = [
        (bytes(damaged), "checksum"),
        (good[: len(good) // 3], "checksum"),
        (blob.to_bytes(), "another-model"),
    ]
    body = {"model": cold_engine.model_name, "messages": MESSAGES, "max_tokens": 4}
    for data, said in cases:
        response = httpx.post(
            f"{cold_url}/v1/chat/completions", json={**body, "kv_blob": base64.b64encode(data).decode()}
        )
        assert _error(response) == (400, "kv_blob", "invalid_kv_blob"), response.text
        assert said in response.json()["error"]["message"], response.text
    not_base64 = httpx.post(f"{cold_url}/v1/chat/completions", json={**body, "kv_blob": "***"})
    assert _error(not_base64) == (400, "kv_blob", "invalid_kv_blob")
    both = httpx.post(f"{cold_url}/v1/chat/completions", json={**body, "kv_blob": "", "kv_blob_id": "x"})
    assert _error(both)[:2] == (400, "kv_blob_id")
    wait_for_idle(cold_engine)


def test_bad_export_requests(server_url: str, engine: Engine) -> None:
    assert _error(export(server_url, {}))[:2] == (400, "prompt")
    assert _error(export(server_url, {"prompt": "a", "prompt_token_ids": [1]}))[:2] == (
        400,
        "prompt_token_ids",
    )
    assert _error(export(server_url, {"model": "nope", "prompt": "a"})) == (404, "model", "model_not_found")
    too_long = {"prompt_token_ids": [1] * engine.max_model_len}
    assert _error(export(server_url, too_long)) == (400, "prompt_token_ids", "context_length_exceeded")
    assert _error(export(server_url, {"prompt": "a", "extra": 1})) == (400, "extra", "unknown_parameter")
