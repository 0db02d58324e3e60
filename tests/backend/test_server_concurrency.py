"""Many streams at once, and clients that leave early: outputs stay right and every KV block comes back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from precog.backend import Engine
from tests.backend.conftest import wait_for_idle

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Name a fruit that is yellow.",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "Write one word that rhymes with cat.",
    "What do bees make?",
    "Which planet is called the red planet?",
    "What is two plus two?",
]


def chat(engine: Engine, question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": question}]
    return {"model": engine.model_name, "messages": messages, "max_tokens": 16, "temperature": 0, **extra}


async def stream_text(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """Read one SSE stream to its end; every frame must parse and the last must be [DONE]."""
    frames = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line:
                assert line.startswith("data: ")
                frames.append(line.removeprefix("data: "))
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] in (
        ["stop"],
        ["length"],
    )
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


async def wait_until_idle(engine: Engine, timeout: float = 30.0) -> None:
    await asyncio.to_thread(wait_for_idle, engine, timeout)


async def test_32_concurrent_streams_match_whole_greedy_answers(server_url: str, engine: Engine) -> None:
    async with httpx.AsyncClient(base_url=server_url, timeout=300) as client:
        expected = {}
        for question in QUESTIONS:
            reply = await client.post("/v1/chat/completions", json=chat(engine, question))
            expected[question] = reply.json()["choices"][0]["message"]["content"]
        asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(32)]
        texts = await asyncio.gather(*(stream_text(client, chat(engine, q, stream=True)) for q in asked))
    assert all(text for text in texts)
    assert [text == expected[q] for q, text in zip(asked, texts, strict=True)] == [True] * 32
    await wait_until_idle(engine)


async def test_stream_disconnect_frees_blocks_at_once(server_url: str, engine: Engine) -> None:
    await wait_until_idle(engine)
    long = chat(engine, "Tell me a very long story.", max_tokens=400, ignore_eos=True, stream=True)
    generated_before = engine.stats().generation_tokens
    async with (
        httpx.AsyncClient(base_url=server_url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=long) as response,
    ):
        frames = 0
        async for line in response.aiter_lines():
            frames += line.startswith("data: ")
            if frames == 3:
                break
        assert engine.stats().kv_blocks_used > 0
    # Leaving the block closed the connection mid-stream.
    await wait_until_idle(engine, timeout=10)
    assert engine.stats().generation_tokens - generated_before < 100
    metrics = httpx.get(f"{server_url}/metrics").text
    assert 'precog_backend_requests_total{outcome="aborted"}' in metrics


async def test_whole_response_disconnect_frees_blocks(server_url: str, engine: Engine) -> None:
    await wait_until_idle(engine)
    long = chat(engine, "Tell me a very long story.", max_tokens=400, ignore_eos=True)
    generated_before = engine.stats().generation_tokens
    async with httpx.AsyncClient(base_url=server_url, timeout=1.0) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/chat/completions", json=long)
    await wait_until_idle(engine, timeout=10)
    assert engine.stats().generation_tokens - generated_before < 200
