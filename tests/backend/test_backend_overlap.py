"""Chunked prefill and prompts that arrive in parts (RServe's overlap) on the real model.

A prompt prefilled in chunks, or prefilled part by part while later parts are still being produced,
must give the same logits as one-shot prefill; a prompt waiting for its next part must neither be
sampled nor hold up the other requests, nor keep the step loop spinning.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import torch
from backend_prompts import QUESTIONS, chat_prompt_ids

from precog.backend import AsyncEngine, Completion, Engine, Request, SamplingParams

LOGIT_TOL = 1e-3
FORCED = 4


@contextmanager
def step_budget(engine: Engine, tokens: int) -> Iterator[None]:
    """Run the block with this per-step token budget and no prefix cache, so every run prefills fully."""
    scheduler, blocks = engine.scheduler, engine.block_manager
    saved = scheduler.max_num_batched_tokens, blocks.enable_prefix_caching
    scheduler.max_num_batched_tokens, blocks.enable_prefix_caching = tokens, False
    try:
        yield
    finally:
        scheduler.max_num_batched_tokens, blocks.enable_prefix_caching = saved


class Recorder:
    """A request's callbacks: its completion, error and the logits of each sampled position."""

    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []
        self.completion: Completion | None = None
        self.error: BaseException | None = None

    def request(self, request_id: str, prompt: list[int], forced: list[int], **kwargs: object) -> Request:
        return Request(
            request_id,
            list(prompt),
            SamplingParams(temperature=0.0, max_tokens=len(forced)),
            forced_token_ids=forced,
            on_logits=lambda row: self.logits.append(row.clone()),
            on_finish=self._finished,
            on_error=self._failed,
            **kwargs,  # type: ignore[arg-type]
        )

    def _finished(self, completion: Completion) -> None:
        self.completion = completion

    def _failed(self, error: BaseException) -> None:
        self.error = error


def step_until_idle(engine: Engine, max_steps: int = 500) -> None:
    for _ in range(max_steps):
        if not engine.has_work():
            return
        engine.step()
    raise AssertionError(f"the engine still had work after {max_steps} steps")


def long_prompt(engine: Engine) -> list[int]:
    """~380 tokens: several questions in one chat turn."""
    return chat_prompt_ids(engine.tokenizer, " ".join(QUESTIONS * 2))


def forced_tokens(engine: Engine, prompt: list[int]) -> list[int]:
    return engine.tokenizer.encode(" The answer, briefly")[:FORCED]


def one_shot_logits(engine: Engine, prompt: list[int], forced: list[int]) -> list[torch.Tensor]:
    reference = Recorder()
    with step_budget(engine, 4096):
        engine.submit(reference.request("one-shot", prompt, forced))
        step_until_idle(engine)
    assert reference.completion is not None and len(reference.logits) == len(forced)
    return reference.logits


def assert_same_logits(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert torch.allclose(mine, theirs, atol=LOGIT_TOL), float((mine - theirs).abs().max())


def test_chunked_prefill_matches_one_shot_prefill(engine: Engine) -> None:
    prompt = long_prompt(engine)
    forced = forced_tokens(engine, prompt)
    expected = one_shot_logits(engine, prompt, forced)
    for budget in (37, 128):
        chunked = Recorder()
        with step_budget(engine, budget):
            engine.submit(chunked.request(f"chunked-{budget}", prompt, forced))
            steps = 0
            while engine.has_work():
                engine.step()
                steps += 1
        assert steps >= len(prompt) // budget  # it really ran in chunks
        assert_same_logits(chunked.logits, expected)


def test_prompt_in_parts_waits_without_stalling_others(engine: Engine) -> None:
    prompt = long_prompt(engine)
    forced = forced_tokens(engine, prompt)
    expected = one_shot_logits(engine, prompt, forced)
    cut = len(prompt) // 3
    parted, other = Recorder(), Recorder()
    with step_budget(engine, 512):
        engine.submit(parted.request("parted", prompt[:cut], forced, prompt_complete=False))
        engine.submit(other.request("other", chat_prompt_ids(engine.tokenizer, QUESTIONS[0]), forced))
        step_until_idle(engine)
        # The other request finished; the parted one prefilled its ready prefix, sampled nothing, and
        # the engine reports no work (so a driver sleeps instead of spinning) while it holds its blocks.
        assert other.completion is not None and other.completion.finish_reason == "length"
        assert parted.completion is None and not parted.logits
        assert not engine.has_work() and engine.stats().running == 1
        engine.extend_prompt("parted", prompt[cut : 2 * cut])
        step_until_idle(engine)
        assert not parted.logits
        engine.extend_prompt("parted", prompt[2 * cut :], final=True)
        step_until_idle(engine)
    assert parted.completion is not None
    assert parted.completion.prompt_token_ids == prompt
    assert_same_logits(parted.logits, expected)
    assert engine.stats().kv_blocks_used == 0


def test_a_part_past_the_context_limit_fails_that_request_only(engine: Engine) -> None:
    parted = Recorder()
    prompt = chat_prompt_ids(engine.tokenizer, QUESTIONS[1])
    engine.submit(parted.request("too-long", prompt, [1], prompt_complete=False))
    step_until_idle(engine)
    engine.extend_prompt("too-long", [1] * engine.max_model_len)
    step_until_idle(engine)
    assert isinstance(parted.error, ValueError)
    assert "maximum context length" in str(parted.error)
    assert engine.stats().kv_blocks_used == 0 and engine.stats().running == 0


def test_a_part_after_the_final_one_is_refused(engine: Engine) -> None:
    parted = Recorder()
    prompt = chat_prompt_ids(engine.tokenizer, QUESTIONS[2])
    forced = [1] * 8
    engine.submit(parted.request("closed", prompt, forced, prompt_complete=False))
    engine.extend_prompt("closed", [], final=True)
    engine.step()
    engine.extend_prompt("closed", [5])
    step_until_idle(engine)
    assert isinstance(parted.error, ValueError) and "already complete" in str(parted.error)
    assert engine.stats().kv_blocks_used == 0


async def test_async_stream_prefills_the_ready_prefix_while_the_rest_arrives(engine: Engine) -> None:
    prompt = long_prompt(engine)
    params = SamplingParams(temperature=0.0, max_tokens=8)
    cut = len(prompt) // 2
    computed_before_rest: list[int] = []

    async def rest() -> AsyncIterator[list[int]]:
        for _ in range(200):  # the ready prefix is prefilled while this part is still "retrieved"
            await asyncio.sleep(0.02)
            if engine.prompt_tokens - start >= cut:
                break
        computed_before_rest.append(engine.prompt_tokens - start)
        yield prompt[cut:]

    with step_budget(engine, 512):
        [expected] = engine.generate([prompt], params)
        front = AsyncEngine(engine)
        front.start()
        start = engine.prompt_tokens
        try:
            tokens = [
                event.token_id
                async for event in front.stream("streamed", prompt[:cut], params, prompt_rest=rest())
            ]
        finally:
            front.shutdown()
    assert computed_before_rest == [cut]
    assert tokens == expected.token_ids


async def test_async_stream_fails_cleanly_when_the_rest_fails(engine: Engine) -> None:
    front = AsyncEngine(engine)
    front.start()

    async def broken() -> AsyncIterator[list[int]]:
        yield [1, 2, 3]
        raise RuntimeError("the retriever went away")

    prompt = chat_prompt_ids(engine.tokenizer, QUESTIONS[3])
    try:
        with pytest.raises(RuntimeError, match="retriever went away"):
            async for _ in front.stream("broken", prompt, SamplingParams(max_tokens=4), prompt_rest=broken()):
                pass
        for _ in range(100):
            if engine.stats().kv_blocks_used == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        front.shutdown()
    assert engine.stats().kv_blocks_used == 0
