"""The asyncio front: concurrent streams match in-process results; closing a stream frees its blocks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from backend_prompts import QUESTIONS, chat_prompt_ids

from precog.backend import AsyncEngine, Engine, EngineShutdownError, SamplingParams, TokenEvent

GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


@pytest.fixture
def front(engine: Engine) -> Iterator[AsyncEngine]:
    async_engine = AsyncEngine(engine)
    async_engine.start()
    yield async_engine
    async_engine.shutdown()


async def collect(
    front: AsyncEngine, request_id: str, ids: list[int], params: SamplingParams
) -> list[TokenEvent]:
    return [event async for event in front.stream(request_id, ids, params)]


async def test_concurrent_streams_match_generate(front: AsyncEngine, engine: Engine) -> None:
    prompts = [chat_prompt_ids(engine.tokenizer, q) for q in QUESTIONS[:6]]
    streams = await asyncio.gather(*(collect(front, f"s{i}", p, GREEDY) for i, p in enumerate(prompts)))
    # generate() submits to the running loop and waits, so both paths share one engine.
    expected = await asyncio.to_thread(engine.generate, prompts, GREEDY)
    for events, completion in zip(streams, expected, strict=True):
        assert [e.token_id for e in events] == completion.token_ids
        assert "".join(e.text for e in events) == completion.text
        assert [e.finish_reason for e in events[:-1]] == [None] * (len(events) - 1)
        assert events[-1].finish_reason == completion.finish_reason
        assert events[-1].completion_tokens == len(completion.token_ids)
        assert events[-1].prompt_tokens == len(completion.prompt_token_ids)
    assert engine.stats().kv_blocks_used == 0


async def test_closing_a_stream_aborts_and_frees_blocks(front: AsyncEngine, engine: Engine) -> None:
    ids = chat_prompt_ids(engine.tokenizer, QUESTIONS[0])
    stream = front.stream("leaver", ids, SamplingParams(temperature=0.0, max_tokens=500, ignore_eos=True))
    async for event in stream:
        assert event.finish_reason is None
        assert engine.stats().kv_blocks_used > 0
        break
    await stream.aclose()
    for _ in range(100):
        if engine.stats().kv_blocks_used == 0:
            break
        await asyncio.sleep(0.05)
    stats = engine.stats()
    assert (stats.kv_blocks_used, stats.running, stats.waiting) == (0, 0, 0)


async def test_bad_request_raises_before_any_event(front: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="temperature"):
        await collect(front, "bad", [1, 2, 3], SamplingParams(temperature=9.0))


async def test_export_kv_while_serving(front: AsyncEngine, engine: Engine) -> None:
    ids = chat_prompt_ids(engine.tokenizer, QUESTIONS[1])
    blob = await front.export_kv(ids)
    assert blob.token_ids == ids
    events = [e async for e in front.stream("with-blob", ids, GREEDY, kv_prefix=blob)]
    cold = await asyncio.to_thread(engine.generate, [ids], GREEDY)
    assert [e.token_id for e in events] == cold[0].token_ids
    assert events[-1].cached_tokens == len(ids) - 1


async def test_shutdown_fails_streams_in_flight(engine: Engine) -> None:
    front = AsyncEngine(engine)
    front.start()
    ids = chat_prompt_ids(engine.tokenizer, QUESTIONS[2])
    stream = front.stream("cut", ids, SamplingParams(temperature=0.0, max_tokens=500, ignore_eos=True))
    await stream.__anext__()
    await asyncio.to_thread(front.shutdown)
    with pytest.raises(EngineShutdownError):
        async for _ in stream:
            pass
    assert engine.stats().kv_blocks_used == 0
    with pytest.raises(EngineShutdownError, match="not running"):
        await collect(front, "late", ids, GREEDY)
