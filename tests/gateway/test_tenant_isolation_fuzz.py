"""Property-based isolation: whatever tenants, system prompts, scopes and questions are mixed, a stored
answer is served only inside the tenant (and scope) that wrote it, by every tier (exact, semantic, answer,
and the Redis tier that replicas share).

Hypothesis runs derandomised (the same examples every run; a failure prints the falsifying example)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import GatewayFactory
from tests.gateway.support import RedisProcess, free_port, wait_for

KEYS = {"key-alpha": "alpha", "key-beta": "beta", "key-gamma": "gamma"}
ADMIN = {"authorization": "Bearer root"}
PROMPTS = ("", "You are a travel agent.", "Today is 2026-12-07. You are a travel agent.")
TOPICS = ("the Eiffel Tower", "Mount Etna", "the Danube", "the Sahara")
FORMS = ("How tall is {}?", "Where is {}?", "what is {} known for", "How old is {}?")
DATE = {"pattern": r"Today is \d{4}-\d{2}-\d{2}\.", "placeholder": "Today is {date}."}


def _ask(
    url: str, key: str, system: str, question: str, scope: str | None, probe: bool = False
) -> httpx.Response:
    """`probe`: look up only (only-if-cached), so that a reader's miss writes nothing back."""
    messages = [{"role": "system", "content": system}] if system else []
    body = {
        "model": "test-model",
        "temperature": 0,
        "messages": [*messages, {"role": "user", "content": question}],
    }
    headers = {"authorization": f"Bearer {key}", **({"x-precog-scope": scope} if scope else {})}
    if probe:
        headers["x-precog-cache-control"] = "only-if-cached"
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def _count(url: str) -> int:
    return int(httpx.get(f"{url}/admin/stats", headers=ADMIN, timeout=10).json()["store"]["entries"])


@pytest.fixture(params=["one gateway", "two replicas sharing Redis"])
def gateways(request: pytest.FixtureRequest, start_gateway: GatewayFactory) -> Iterator[tuple[str, str]]:
    """(where answers are written, where they are probed): one gateway, or two whose stores are their own
    and whose shared exact tier is one real redis-server."""
    settings: dict[str, Any] = {"api_keys": KEYS, "admin_token": "root", "scope_templates": [DATE]}
    if request.param == "one gateway":
        url = start_gateway(**settings).url
        yield url, url
        return
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    redis = RedisProcess(free_port())
    redis.start()
    try:
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        yield (
            start_gateway(redis_url=redis_url, **settings).url,
            start_gateway(redis_url=redis_url, **settings).url,
        )
    finally:
        redis.kill()


def test_no_stored_answer_crosses_a_tenant(gateways: tuple[str, str]) -> None:
    url, probed = gateways
    nonce = itertools.count()
    written: list[dict[str, Any]] = []
    crossed: list[str] = []

    @given(
        writer=st.sampled_from(sorted(KEYS)),
        reader=st.sampled_from(sorted(KEYS)),
        system=st.sampled_from(PROMPTS),
        scope=st.sampled_from([None, "app-1"]),
        topic=st.sampled_from(TOPICS),
        form=st.sampled_from(FORMS),
        other_form=st.sampled_from(FORMS),
    )
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def check(
        writer: str, reader: str, system: str, scope: str | None, topic: str, form: str, other_form: str
    ) -> None:
        # a fresh subject each example: only this example's entry can answer its questions
        subject = f"{topic} number {next(nonce)}"
        question = form.format(subject)
        before = _count(url)
        assert _ask(url, writer, system, question, scope).headers["x-precog-cache"] == "miss"
        wait_for(lambda: _count(url) == before + 1)
        written.append({"tenant": KEYS[writer], "question": question})
        # the writer's tenant is served where the probes go (through the shared tier between replicas)
        wait_for(lambda: _ask(probed, writer, system, question, scope, probe=True).status_code == 200)
        for asked in (question, other_form.format(subject), f"{question} Please answer briefly."):
            if KEYS[reader] != KEYS[writer]:
                response = _ask(probed, reader, system, asked, scope, probe=True)
                assert response.status_code == 504, (writer, reader, asked, response.headers)
                crossed.append(asked)

    check()
    assert len({w["tenant"] for w in written}) == len(KEYS) and len(crossed) > 30
