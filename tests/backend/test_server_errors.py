"""Bad requests get OpenAI-shaped errors with the right status, param and code, and cost no KV blocks."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from precog.backend import Engine

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def post(url: str, body: Any, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def assert_error(
    response: httpx.Response, status: int, param: str | None, code: str | None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    return dict(error)


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"temperature": 2.5}, "temperature", "invalid_value"),
        ({"temperature": "hot"}, "temperature", "invalid_type"),
        ({"top_p": 0}, "top_p", "invalid_value"),
        ({"top_k": -1}, "top_k", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"n": 0}, "n", "invalid_value"),
        ({"n": 129}, "n", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"presence_penalty": 0.5}, "presence_penalty", "invalid_value"),
        ({"logit_bias": {"1": 5}}, "logit_bias", "unknown_parameter"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        ({"messages": None}, "messages", "invalid_type"),
        ({"kv_compression": {"method": "knorm", "ratio": 1.0}}, "kv_compression.ratio", "invalid_value"),
    ],
)
def test_bad_chat_fields(
    server_url: str, engine: Engine, change: dict[str, Any], param: str, code: str
) -> None:
    assert_error(post(server_url, {"model": engine.model_name, **CHAT, **change}), 400, param, code)


def test_unknown_compression_method_is_refused(server_url: str, engine: Engine) -> None:
    body = {"model": engine.model_name, **CHAT, "kv_compression": {"method": "zip"}}
    error = assert_error(post(server_url, body), 400, "kv_compression", None)
    assert "streaming_llm" in error["message"]


def test_a_compressed_request_evicts_prompt_tokens(server_url: str, engine: Engine) -> None:
    before = engine.stats()
    prompt = "\n".join(["The quick brown fox jumps over the lazy dog."] * 12)
    body = {
        "model": engine.model_name,
        "prompt": prompt,
        "max_tokens": 4,
        "temperature": 0,
        "kv_compression": {"method": "streaming_llm", "ratio": 0.5},
    }
    response = post(server_url, body, "/v1/completions")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"]
    after = engine.stats()
    prompt_tokens = response.json()["usage"]["prompt_tokens"]
    assert after.kv_compressed_requests == before.kv_compressed_requests + 1
    assert after.kv_tokens_evicted - before.kv_tokens_evicted >= prompt_tokens // 3


@pytest.mark.parametrize(
    ("prompt", "param", "code"),
    [
        ([], "prompt", "invalid_value"),
        ("", "prompt", None),
        (["Hello", ""], "prompt[1]", None),
        ([[1], [10**9]], "prompt[1]", None),
        (["a"] * 65, "n", None),  # 65 prompts x n=2 is over the 128 choices one request may ask for
    ],
)
def test_bad_completion_prompts(
    server_url: str, engine: Engine, prompt: Any, param: str, code: str | None
) -> None:
    body = {"model": engine.model_name, "prompt": prompt, "max_tokens": 1, "n": 2}
    assert_error(post(server_url, body, "/v1/completions"), 400, param, code)


def test_missing_model_and_unknown_model(server_url: str, engine: Engine) -> None:
    assert_error(post(server_url, CHAT), 400, "model", "missing_required_parameter")
    error = assert_error(post(server_url, {"model": "gpt-9", **CHAT}), 404, "model", "model_not_found")
    assert "gpt-9" in error["message"]


def test_malformed_and_non_object_json(server_url: str) -> None:
    broken = httpx.post(
        f"{server_url}/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert_error(broken, 400, None, "invalid_json")
    assert_error(post(server_url, [1, 2, 3]), 400, None, "invalid_type")


def test_context_length(server_url: str, engine: Engine) -> None:
    limit = engine.max_model_len
    long_prompt = " ".join(["word"] * (limit + 10))
    body = {"model": engine.model_name, "prompt": long_prompt, "max_tokens": 1}
    error = assert_error(post(server_url, body, "/v1/completions"), 400, "prompt", "context_length_exceeded")
    assert str(limit) in error["message"]
    # A prompt that fits, with a completion that does not.
    fits = {"model": engine.model_name, **CHAT, "max_tokens": limit}
    assert_error(post(server_url, fits), 400, "messages", "context_length_exceeded")
    # Streamed requests are refused before the stream starts: a JSON error, not an SSE body.
    streamed = {"model": engine.model_name, "prompt": long_prompt, "stream": True}
    assert_error(post(server_url, streamed, "/v1/completions"), 400, "prompt", "context_length_exceeded")


def test_prompt_token_ids_out_of_vocabulary(server_url: str, engine: Engine) -> None:
    body = {"model": engine.model_name, "prompt": [1, 2, 10**9]}
    assert_error(post(server_url, body, "/v1/completions"), 400, "prompt", None)


def test_unknown_route_and_method(server_url: str) -> None:
    assert_error(httpx.get(f"{server_url}/v1/nothing"), 404, None, "not_found")
    assert_error(httpx.get(f"{server_url}/v1/completions"), 405, None, "method_not_allowed")


def test_sdk_raises_typed_errors(server_url: str, engine: Engine) -> None:
    with openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model=engine.model_name, messages=CHAT["messages"], temperature=9)  # type: ignore[arg-type]
        assert bad.value.param == "temperature"
        with pytest.raises(openai.NotFoundError) as missing:
            client.completions.create(model="nope", prompt="x")
        assert missing.value.code == "model_not_found"


def test_errors_leave_no_blocks_and_are_counted(server_url: str, engine: Engine) -> None:
    post(server_url, {"model": engine.model_name, **CHAT, "max_tokens": engine.max_model_len})
    assert engine.stats().kv_blocks_used == 0
    metrics = httpx.get(f"{server_url}/metrics").text
    assert 'precog_backend_rejected_requests_total{code="context_length_exceeded",status="400"}' in metrics
