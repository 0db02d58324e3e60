"""The gateway's small parts on their own: scope building, SSE reading and writing, breaker, rate limit."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from precog.gateway.batcher import EmbeddingBatcher
from precog.gateway.breaker import BreakerState, CircuitBreaker
from precog.gateway.openai_format import DONE, AnswerCollector, StoredAnswer
from precog.gateway.query import chat_query, completion_query
from precog.gateway.ratelimit import RateLimiter
from precog.gateway.schemas import ChatCompletionRequest, CompletionRequest


def _chat(*messages: tuple[str, object], **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages], **extra}
    )


def test_scope_covers_system_prompt_history_tenant_and_kind() -> None:
    base = chat_query(_chat(("system", "Be brief."), ("user", "Hi?")), "t1")
    assert base.question == "Hi?" and base.system_prompt == "Be brief." and base.uncacheable is None
    same = chat_query(_chat(("system", "be   BRIEF."), ("user", "Other?")), "t1")
    assert same.scope == base.scope
    assert chat_query(_chat(("system", "Be long."), ("user", "Hi?")), "t1").scope != base.scope
    assert chat_query(_chat(("system", "Be brief."), ("user", "Hi?")), "t2").scope != base.scope
    history = chat_query(
        _chat(("system", "Be brief."), ("user", "A"), ("assistant", "B"), ("user", "Hi?")), "t1"
    )
    assert history.scope != base.scope
    after_a = chat_query(_chat(("system", "Be brief."), ("user", "A")), "t1")
    assert after_a.next_turn_scope("B") == history.scope
    text = completion_query(CompletionRequest.model_validate({"model": "m", "prompt": "Hi?"}), "t1")
    assert text.scope != chat_query(_chat(("user", "Hi?")), "t1").scope


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (_chat(("user", "q"), n=2), "n > 1"),
        (_chat(("user", "q"), tools=[{"type": "function"}]), "tool"),
        (_chat(("user", "q"), ("assistant", "a")), "last message"),
        (_chat(("user", [{"type": "image_url", "image_url": {"url": "x"}}])), "non-text"),
        (_chat(("user", "q"), logprobs=True), "logprobs"),
    ],
)
def test_requests_the_cache_must_not_answer(request_: ChatCompletionRequest, why: str) -> None:
    assert why in (chat_query(request_, "t").uncacheable or "")


def test_text_parts_are_joined_into_the_question() -> None:
    query = chat_query(
        _chat(("user", [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}])), "t"
    )
    assert query.question == "Hello there" and query.uncacheable is None


def test_stored_answer_streams_chunks_that_reassemble_and_a_collector_reads_them_back() -> None:
    text = "Paris is the capital of France. " * 5
    stream = b"".join(StoredAnswer("chat", "m", text, 10, 20).sse(include_usage=True))
    assert stream.endswith(DONE)
    collector = AnswerCollector("chat")
    for i in range(0, len(stream), 7):  # events split at arbitrary byte boundaries
        collector.feed_sse(stream[i : i + 7])
    assert collector.text == text and collector.complete
    assert collector.completion_tokens == 20
    events = [json.loads(e[6:]) for e in stream.split(b"\n\n") if e.startswith(b"data: {")]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] == 30


def test_collector_refuses_truncated_errored_and_unfinished_answers() -> None:
    truncated = AnswerCollector("completion")
    truncated.take_body({"choices": [{"index": 0, "text": "abc", "finish_reason": "length"}]})
    assert not truncated.complete
    errored = AnswerCollector("chat")
    errored.feed_sse(b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata: {"error":{}}\n\n')
    assert not errored.complete
    unfinished = AnswerCollector("chat")
    unfinished.feed_sse(b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n')
    assert not unfinished.complete  # no [DONE]: the stream was cut


def test_breaker_opens_after_failures_and_lets_one_trial_through() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_s=0.05)
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    time.sleep(0.06)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    time.sleep(0.06)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


def test_an_abandoned_trial_frees_the_half_open_breaker() -> None:
    """A hit cancels the parallel upstream request; if that was the half-open trial, the breaker must
    not wait for its outcome for ever (it stayed open for good before)."""
    breaker = CircuitBreaker(failure_threshold=1, reset_s=0.05)
    breaker.record_failure()
    time.sleep(0.06)
    assert breaker.allow() and not breaker.allow()
    breaker.abandon()
    assert breaker.allow()


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    limiter = RateLimiter(per_minute=600, burst=2)
    assert limiter.acquire("k") is None and limiter.acquire("k") is None
    wait = limiter.acquire("k")
    assert wait is not None and 0 < wait <= 0.1
    assert limiter.acquire("other") is None
    time.sleep(wait + 0.01)
    assert limiter.acquire("k") is None
    assert RateLimiter(per_minute=0, burst=1).acquire("k") is None


def test_batcher_embeds_concurrent_questions_in_one_call() -> None:
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    async def run() -> list[np.ndarray]:
        batcher = EmbeddingBatcher(encode, max_batch=8, window_ms=20)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.embed("x" * n) for n in range(1, 6)))
        finally:
            await batcher.stop()

    vectors = asyncio.run(run())
    assert calls == [5]
    for n, vector in enumerate(vectors, start=1):
        assert np.isclose(np.linalg.norm(vector), 1.0)
        assert np.allclose(vector, np.array([n, 1.0]) / np.hypot(n, 1.0))


def test_batcher_embeds_a_repeated_wording_once_and_keeps_the_vector_read_only() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batcher = EmbeddingBatcher(encode, window_ms=0, cache_size=1)
        batcher.start()
        try:
            first = await batcher.embed("same words")
            again = await batcher.embed("same words")
            await batcher.embed("other")  # evicts "same words" (cache of one)
            return first, again, await batcher.embed("same words")
        finally:
            await batcher.stop()

    first, again, after_eviction = asyncio.run(run())
    assert calls == [["same words"], ["other"], ["same words"]]
    assert again is first and np.array_equal(after_eviction, first)
    with pytest.raises(ValueError):
        first[0] = 0.0
