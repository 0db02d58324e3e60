"""Whatever JSON a client sends, the server answers 200 or an OpenAI-shaped 4xx, never a 5xx or a hang."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precog.backend import Engine
from tests.backend.conftest import wait_for_idle

pytestmark = pytest.mark.slow

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = [
    "model",
    "messages",
    "prompt",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
    "n",
    "ignore_eos",
    "kv_blob",
    "kv_blob_id",
    "unknown",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    endpoint=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/kv/export"]),
    changes=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
)
def test_any_body_gets_success_or_openai_error(
    server_url: str, engine: Engine, endpoint: str, changes: dict[str, Any]
) -> None:
    base: dict[str, Any] = {"model": engine.model_name, "max_tokens": 1}
    if endpoint == "/v1/chat/completions":
        base["messages"] = [{"role": "user", "content": "Hi"}]
    elif endpoint == "/v1/completions":
        base["prompt"] = "Hi"
    else:
        base = {"prompt": "Hi"}
    body = {**base, **changes}
    # Keep valid requests short (no limit means "to the context length"): length is not under test here.
    if body.get("max_tokens") is None or (isinstance(body["max_tokens"], int) and body["max_tokens"] > 4):
        body["max_tokens"] = 4
    if isinstance(body.get("n"), int) and body["n"] > 2:
        body["n"] = 2
    response = httpx.post(f"{server_url}{endpoint}", json=body, timeout=120)
    assert response.status_code in (200, 400, 404), (body, response.text)
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    wait_for_idle(engine)
