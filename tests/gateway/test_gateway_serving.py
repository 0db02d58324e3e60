"""Serving through the gateway: misses relayed and written back, hits from storage, scope and tenants."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.gateway.conftest import GatewayFactory
from tests.gateway.fake_upstream import UpstreamState, answer_for
from tests.gateway.support import chat, entries, wait_for


def _post(url: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_miss_is_relayed_written_back_and_then_served_from_storage(gateway_url: str) -> None:
    first = _post(gateway_url, chat("What is the capital of France?"))
    assert first.status_code == 200
    assert first.headers["x-precog-cache"] == "miss"
    assert first.json()["choices"][0]["message"]["content"] == answer_for("What is the capital of France?")
    wait_for(lambda: len(entries(gateway_url)) == 1)

    second = _post(gateway_url, chat("  what is the CAPITAL of France? "))
    assert second.headers["x-precog-cache"] == "hit"
    assert second.headers["x-precog-tier"] == "exact"
    assert second.headers["x-precog-entry-id"] == entries(gateway_url)[0]["id"]
    assert float(second.headers["x-precog-similarity"]) == 1.0
    body = second.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == answer_for("What is the capital of France?")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert "exact" in second.headers["server-timing"]


def _sdk(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_openai_sdk_streams_a_stored_answer(gateway_url: str) -> None:
    client = _sdk(gateway_url)
    question = "How many moons does Mars have?"
    miss = client.chat.completions.with_raw_response.create(
        model="test-model", messages=[{"role": "user", "content": question}], temperature=0, stream=True
    )
    assert miss.headers["x-precog-cache"] == "miss"
    assert "".join(c.choices[0].delta.content or "" for c in miss.parse() if c.choices) == answer_for(
        question
    )
    wait_for(lambda: len(entries(gateway_url)) == 1)

    hit = client.chat.completions.with_raw_response.create(
        model="test-model",
        messages=[{"role": "user", "content": question}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert hit.headers["x-precog-cache"] == "hit"
    chunks = list(hit.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer_for(question)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_paraphrase_hits_semantically_and_a_different_number_does_not(gateway_url: str) -> None:
    _post(gateway_url, chat("How tall is the Eiffel Tower in meters?"))
    wait_for(lambda: len(entries(gateway_url)) == 1)
    paraphrase = _post(gateway_url, chat("What is the height of the Eiffel Tower in meters?"))
    assert paraphrase.headers["x-precog-cache"] == "hit", paraphrase.headers["x-precog-cache-reason"]
    assert paraphrase.headers["x-precog-tier"] == "semantic"
    assert 0.85 <= float(paraphrase.headers["x-precog-similarity"]) < 1.0

    _post(gateway_url, chat("What is 12 plus 7?"))
    wait_for(lambda: len(entries(gateway_url)) == 2)
    other_number = _post(gateway_url, chat("What is 12 plus 8?"))
    assert other_number.headers["x-precog-cache"] == "miss"
    assert "guard" in other_number.headers["x-precog-cache-reason"]
    assert other_number.json()["choices"][0]["message"]["content"] == answer_for("What is 12 plus 8?")


def test_text_completions_are_cached_apart_from_chat(gateway_url: str) -> None:
    _post(gateway_url, chat("Name a prime number"))
    wait_for(lambda: len(entries(gateway_url)) == 1)
    body = {"model": "test-model", "prompt": "Name a prime number", "temperature": 0}
    first = httpx.post(f"{gateway_url}/v1/completions", json=body, timeout=30)
    assert first.headers["x-precog-cache"] == "miss"
    assert first.json()["choices"][0]["text"] == answer_for("Name a prime number")
    wait_for(lambda: len(entries(gateway_url)) == 2)
    streamed = _sdk(gateway_url).completions.with_raw_response.create(**body, stream=True)
    assert streamed.headers["x-precog-cache"] == "hit"
    assert "".join(c.choices[0].text for c in streamed.parse() if c.choices) == answer_for(
        "Name a prime number"
    )


def test_cache_control_header(gateway_url: str, upstream_state: UpstreamState) -> None:
    question = "Which planet is largest?"
    only = _post(gateway_url, chat(question), **{"x-precog-cache-control": "only-if-cached"})
    assert only.status_code == 504
    assert only.json()["error"]["code"] == "cache_miss"
    assert upstream_state.requests == []

    bypass = _post(gateway_url, chat(question), **{"x-precog-cache-control": "bypass"})
    assert bypass.headers["x-precog-cache"] == "bypass"
    _post(gateway_url, chat(question))
    wait_for(lambda: len(entries(gateway_url)) == 1)
    assert (
        _post(gateway_url, chat(question), **{"x-precog-cache-control": "only-if-cached"}).status_code == 200
    )
    before = len(upstream_state.requests)
    refreshed = _post(gateway_url, chat(question), **{"x-precog-cache-control": "refresh"})
    assert refreshed.headers["x-precog-cache"] == "miss"
    assert len(upstream_state.requests) == before + 1

    bad = _post(gateway_url, chat(question), **{"x-precog-cache-control": "sometimes"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-precog-cache-control"


@pytest.mark.parametrize(
    ("extra", "verdict"),
    [
        ({"temperature": 0.7}, "refused"),  # sampled: not deterministic
        ({"max_tokens": 3}, "incomplete"),  # truncated: finish_reason length
        ({"max_tokens": 3, "stream": True}, "incomplete"),
        ({"stop": ["never in the answer"]}, "refused"),  # stop strings may have cut the answer
        ({"n": 2}, None),  # several samples: the cache is bypassed altogether
    ],
)
def test_answers_that_must_not_be_stored(gateway_url: str, extra: dict, verdict: str | None) -> None:
    question = "Why is the sky blue?"
    for _ in range(2):
        response = _post(gateway_url, {**chat(question), **extra})
        assert response.status_code == 200
        assert response.headers["x-precog-cache"] == ("bypass" if verdict is None else "miss")
    metrics = httpx.get(f"{gateway_url}/metrics", timeout=10).text
    if verdict is not None:
        assert f'precog_gateway_writebacks_total{{result="{verdict}"}} 2.0' in metrics
    assert 'result="stored"' not in metrics
    assert entries(gateway_url) == []


def test_a_stored_answer_that_breaks_the_requests_limits_is_not_served(gateway_url: str) -> None:
    question = "What is the boiling point of water?"
    _post(gateway_url, chat(question))
    wait_for(lambda: len(entries(gateway_url)) == 1)
    answer = answer_for(question)

    roomy = _post(gateway_url, chat(question, max_tokens=1000))
    assert roomy.headers["x-precog-cache"] == "hit"
    assert roomy.json()["choices"][0]["message"]["content"] == answer

    short = _post(gateway_url, chat(question, max_tokens=2))
    assert short.headers["x-precog-cache"] == "miss"
    assert "longer than max_tokens=2" in short.headers["x-precog-cache-reason"]
    assert short.json()["choices"][0]["message"]["content"] != answer

    stopped = _post(gateway_url, chat(question, stop=["forty"]))
    assert stopped.headers["x-precog-cache"] == "miss"
    assert "stop string 'forty'" in stopped.headers["x-precog-cache-reason"]


def test_scope_separates_system_prompts_conversations_and_tenants(start_gateway: GatewayFactory) -> None:
    url = start_gateway(api_keys={"key-a": "alpha", "key-b": "beta"}, admin_token="root").url
    question = "What did I just say?"
    a = {"authorization": "Bearer key-a"}
    admin = {"authorization": "Bearer root"}

    def count() -> int:
        return len(httpx.get(f"{url}/admin/entries", headers=admin, timeout=10).json()["entries"])

    assert _post(url, chat(question), **a).headers["x-precog-cache"] == "miss"
    wait_for(lambda: count() == 1)
    assert _post(url, chat(question), **a).headers["x-precog-cache"] == "hit"
    assert _post(url, chat(question), authorization="Bearer key-b").headers["x-precog-cache"] == "miss"

    with_system = {
        "model": "test-model",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": question},
        ],
    }
    assert _post(url, with_system, **a).headers["x-precog-cache"] == "miss"
    other_history = {
        "model": "test-model",
        "temperature": 0,
        "messages": [
            {"role": "user", "content": "I like cats."},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": question},
        ],
    }
    assert _post(url, other_history, **a).headers["x-precog-cache"] == "miss"
    assert _post(url, chat(question, model="other-model"), **a).headers["x-precog-cache"] == "miss"


def test_every_request_logs_one_line_that_says_why(
    gateway_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="precog.gateway.proxy")
    _post(gateway_url, chat("Is a tomato a fruit?"))
    wait_for(lambda: len(entries(gateway_url)) == 1)
    _post(gateway_url, chat("Is a tomato a fruit?"))
    lines = [r for r in caplog.records if r.name == "precog.gateway.proxy" and r.getMessage() == "request"]
    assert [r.outcome for r in lines] == ["miss", "hit"]  # type: ignore[attr-defined]
    assert lines[0].reason == "no stored question in this scope"  # type: ignore[attr-defined]
    assert lines[1].reason.startswith(entries(gateway_url)[0]["id"])  # type: ignore[attr-defined]
    assert all(r.tenant == "default" and r.model == "test-model" for r in lines)  # type: ignore[attr-defined]


def test_a_chat_app_default_temperature_hits_stored_answers_but_is_never_written_back(
    gateway_url: str, upstream_state: UpstreamState
) -> None:
    """What a chat app sends by default (no temperature: 1.0) may be served a stored answer; its own
    sampled answer is not stored (writeback_max_temperature 0)."""
    sampled = {"model": "test-model", "messages": [{"role": "user", "content": "Name a large ocean"}]}
    miss = _post(gateway_url, sampled)
    assert miss.headers["x-precog-cache"] == "miss"
    time.sleep(0.5)
    assert entries(gateway_url) == []
    _post(gateway_url, chat("Name a large ocean"))  # greedy: stored
    wait_for(lambda: len(entries(gateway_url)) == 1)
    hit = _post(gateway_url, sampled)
    assert hit.headers["x-precog-cache"] == "hit", hit.headers["x-precog-cache-reason"]


def test_a_repeat_with_typos_hits_under_the_similarity_floor_and_another_entity_does_not(
    gateway_url: str,
) -> None:
    _post(gateway_url, chat("What is the capital of Australia?"))
    wait_for(lambda: len(entries(gateway_url)) == 1)
    typos = _post(gateway_url, chat("What is the captial of Austrlia?"))  # cosine 0.66
    assert typos.headers["x-precog-cache"] == "hit", typos.headers["x-precog-cache-reason"]
    assert float(typos.headers["x-precog-similarity"]) < 0.85
    assert "typos" in typos.headers["x-precog-cache-reason"]
    other = _post(gateway_url, chat("What is the capital of Austria?"))
    assert other.headers["x-precog-cache"] == "miss"
