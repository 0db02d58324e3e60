"""The official `openai` SDK against the real server: chat and completions, streamed and whole.

Every answer is checked against the engine's own in-process greedy `generate` on the same tokens, so
the HTTP layer (templating, SSE framing, detokenised deltas, usage) is tested, not just "some text".
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from precog.backend import Completion, Engine, SamplingParams
from tests.backend.conftest import wait_for_idle

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def chat_ids(engine: Engine, messages: list[dict[str, str]]) -> list[int]:
    text = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(engine.tokenizer(text, add_special_tokens=False).input_ids)


def greedy(engine: Engine, ids: list[int], max_tokens: int) -> Completion:
    """The engine's own in-process answer, the reference for what the server must send."""
    return engine.generate([ids], SamplingParams(temperature=0.0, max_tokens=max_tokens))[0]


def test_chat_whole_matches_engine(client: openai.OpenAI, engine: Engine) -> None:
    reply = client.chat.completions.create(
        model=engine.model_name,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,  # type: ignore[arg-type]
    )
    ids = chat_ids(engine, QUESTION)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == greedy(engine, ids, 24).text
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert reply.object == "chat.completion" and reply.model == engine.model_name
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(ids)
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_stream_same_text_role_first_usage_last(client: openai.OpenAI, engine: Engine) -> None:
    chunks = list(
        client.chat.completions.create(
            model=engine.model_name,
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reference = greedy(engine, chat_ids(engine, QUESTION), 24)
    assert text == reference.text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == reference.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_whole_and_stream_agree_with_logprobs(client: openai.OpenAI, engine: Engine) -> None:
    prompt = "The three primary colours are"
    whole = client.completions.create(
        model=engine.model_name, prompt=prompt, max_tokens=12, temperature=0, logprobs=2
    )
    ids = list(engine.tokenizer(prompt, add_special_tokens=False).input_ids)
    expected = greedy(engine, ids, 12).text
    choice = whole.choices[0]
    assert choice.text == expected and choice.finish_reason == "length"
    assert choice.logprobs is not None
    assert len(choice.logprobs.token_logprobs or []) == 12
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs or [])
    # Greedy: the chosen token is the most likely one, so it heads its own top-2.
    for token, top in zip(choice.logprobs.tokens or [], choice.logprobs.top_logprobs or [], strict=True):
        assert len(top) == 2 and max(top, key=top.__getitem__) == token
    assert "".join(choice.logprobs.tokens or []) == expected

    streamed = list(
        client.completions.create(
            model=engine.model_name, prompt=prompt, max_tokens=12, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == expected
    assert streamed[-1].choices[0].finish_reason == "length"


def test_stop_string_is_cut_and_reported(client: openai.OpenAI, engine: Engine) -> None:
    reply = client.chat.completions.create(
        model=engine.model_name,
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        stop=["Paris"],  # type: ignore[arg-type]
    )
    full = greedy(engine, chat_ids(engine, QUESTION), 24).text
    assert reply.choices[0].message.content == full[: full.index("Paris")]
    assert reply.choices[0].finish_reason == "stop"


def test_seeded_sampling_repeats(client: openai.OpenAI, engine: Engine) -> None:
    def sample() -> str:
        reply = client.completions.create(
            model=engine.model_name, prompt="My favourite animal is", max_tokens=10, temperature=1.0, seed=7
        )
        return reply.choices[0].text

    assert sample() == sample()


def test_models_health_and_metrics(client: openai.OpenAI, engine: Engine, server_url: str) -> None:
    client.completions.create(model=engine.model_name, prompt="Hello", max_tokens=3, temperature=0)
    assert [m.id for m in client.models.list()] == [engine.model_name]
    assert client.models.retrieve(engine.model_name).id == engine.model_name
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    assert httpx.get(f"{server_url}/healthz").json() == {"status": "ok", "model": engine.model_name}
    wait_for_idle(engine)
    metrics = httpx.get(f"{server_url}/metrics").text
    stats = engine.stats()
    assert f"precog_backend_kv_blocks_total {float(stats.kv_blocks_total)}" in metrics
    assert "precog_backend_kv_blocks_used 0.0" in metrics
    assert 'precog_backend_requests_total{outcome="finished"}' in metrics
    assert sample_value(metrics, "precog_backend_time_to_first_token_seconds_count") >= 1
    assert sample_value(metrics, "precog_backend_inter_token_latency_seconds_count") >= 1


def sample_value(exposition: str, name: str) -> float:
    return float(next(line for line in exposition.splitlines() if line.startswith(name + " ")).split()[-1])


def test_batch_of_prompts_with_n_seeded_choices(client: openai.OpenAI, engine: Engine) -> None:
    """Choice (prompt i, j of n) is index i*n+j and samples with seed+j: each equals the engine's own run."""
    prompts = ["My favourite animal is", "The weather today"]
    reply = client.completions.create(
        model=engine.model_name, prompt=prompts, n=2, max_tokens=8, temperature=1.0, seed=11
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    ids = [list(engine.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    for choice in reply.choices:
        i, j = divmod(choice.index, 2)
        params = SamplingParams(temperature=1.0, seed=11 + j, max_tokens=8)
        assert choice.text == engine.generate([ids[i]], params)[0].text
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len(ids[0]) + len(ids[1])
    assert reply.usage.completion_tokens == 4 * 8


def test_chat_stream_with_n_choices(client: openai.OpenAI, engine: Engine) -> None:
    chunks = list(
        client.chat.completions.create(
            model=engine.model_name,
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=12,
            temperature=0,
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = {i: "" for i in range(3)}
    roles = set()
    for chunk in chunks[:-1]:
        choice = chunk.choices[0]
        texts[choice.index] += choice.delta.content or ""
        if choice.delta.role:
            roles.add(choice.index)
    reference = greedy(engine, chat_ids(engine, QUESTION), 12)
    assert roles == {0, 1, 2}
    assert texts == {i: reference.text for i in range(3)}
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == len(chat_ids(engine, QUESTION))
    assert usage.completion_tokens == 3 * reference.completion_tokens
