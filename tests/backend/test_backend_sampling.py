"""Sampling on the real model: seeds, top-k/top-p limits, stop strings, max_tokens, logprobs."""

from __future__ import annotations

import math

import pytest
from backend_prompts import QUESTIONS, chat_prompt_ids

from precog.backend import Engine, SamplingParams


@pytest.fixture(scope="module")
def prompt(engine: Engine) -> list[int]:
    return chat_prompt_ids(engine.tokenizer, QUESTIONS[2])


@pytest.fixture(scope="module")
def greedy(engine: Engine, prompt: list[int]):  # type: ignore[no-untyped-def]
    return engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True))[0]


def test_same_seed_same_tokens_even_when_batched(engine: Engine, prompt: list[int]) -> None:
    params = SamplingParams(temperature=1.0, top_p=0.95, seed=1234, max_tokens=20)
    alone = engine.generate([prompt], params)[0]
    batched = engine.generate([prompt, chat_prompt_ids(engine.tokenizer, QUESTIONS[3])], params)[0]
    assert alone.token_ids == batched.token_ids


def test_different_seeds_explore(engine: Engine, prompt: list[int]) -> None:
    outs = engine.generate(
        [prompt] * 4,
        [SamplingParams(temperature=1.2, seed=s, max_tokens=16, ignore_eos=True) for s in range(4)],
    )
    assert len({tuple(o.token_ids) for o in outs}) > 1


def test_top_k_one_and_tiny_top_p_are_greedy(engine: Engine, prompt: list[int], greedy) -> None:  # type: ignore[no-untyped-def]
    top_k = SamplingParams(temperature=1.5, top_k=1, seed=7, max_tokens=24, ignore_eos=True)
    top_p = SamplingParams(temperature=1.5, top_p=1e-6, seed=7, max_tokens=24, ignore_eos=True)
    outs = engine.generate([prompt, prompt], [top_k, top_p])
    assert outs[0].token_ids == greedy.token_ids
    assert outs[1].token_ids == greedy.token_ids


def test_top_k_limits_choices_to_the_k_most_likely(engine: Engine, prompt: list[int]) -> None:
    params = SamplingParams(temperature=2.0, top_k=3, seed=3, max_tokens=12, logprobs=3, ignore_eos=True)
    [out] = engine.generate([prompt], params)
    assert out.logprobs is not None
    for step in out.logprobs:
        assert step.token_id in {alt.token_id for alt in step.top}


def test_stop_string_cuts_text_before_it(engine: Engine, prompt: list[int], greedy) -> None:  # type: ignore[no-untyped-def]
    text = greedy.text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), f"pick a visible stop string from {text!r}"
    [out] = engine.generate(
        [prompt], SamplingParams(temperature=0.0, max_tokens=24, stop=[stop], ignore_eos=True)
    )
    assert out.finish_reason == "stop"
    assert out.text == text[: text.index(stop)]
    assert out.token_ids == greedy.token_ids[: len(out.token_ids)]


def test_max_tokens_gives_length(engine: Engine, prompt: list[int], greedy) -> None:  # type: ignore[no-untyped-def]
    [out] = engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=5, ignore_eos=True))
    assert out.finish_reason == "length"
    assert out.token_ids == greedy.token_ids[:5]


def test_eos_from_generation_config_stops(engine: Engine) -> None:
    ids = chat_prompt_ids(engine.tokenizer, "Say just the word yes.")
    [out] = engine.generate([ids], SamplingParams(temperature=0.0, max_tokens=64))
    assert out.finish_reason == "stop"
    assert out.token_ids[-1] in engine.eos_token_ids
    assert engine.tokenizer.eos_token not in out.text


def test_logprobs_are_a_distribution_and_chosen_greedy_is_the_top(engine: Engine, prompt: list[int]) -> None:
    [out] = engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=6, logprobs=5))
    assert out.logprobs is not None and len(out.logprobs) == len(out.token_ids)
    for token_id, step in zip(out.token_ids, out.logprobs, strict=True):
        assert step.token_id == token_id and len(step.top) == 5
        assert step.top[0].token_id == token_id and math.isclose(step.top[0].logprob, step.logprob)
        assert [a.logprob for a in step.top] == sorted((a.logprob for a in step.top), reverse=True)
        assert sum(math.exp(a.logprob) for a in step.top) <= 1.0 + 1e-5
        assert step.token == engine.tokenizer.decode([token_id])


def test_no_logprobs_unless_asked(engine: Engine, prompt: list[int]) -> None:
    [out] = engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=2))
    assert out.logprobs is None
