"""Two gateway replicas sharing a real redis-server: exact answers, invalidations and counters cross
replicas; when Redis dies the replicas keep serving from their own stores, and recover when it returns."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.conftest import GatewayFactory
from tests.gateway.support import RedisProcess, chat, entries, free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis")]


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess(free_port())
    server.start()
    yield server
    server.kill()


def _ask(url: str, question: str) -> httpx.Response:
    response = httpx.post(f"{url}/v1/chat/completions", json=chat(question), timeout=30)
    assert response.status_code == 200, response.text
    return response


def _shared_up(url: str) -> bool:
    return bool(httpx.get(f"{url}/admin/stats", timeout=10).json()["shared_tier"]["up"])


@pytest.mark.slow
def test_replicas_share_answers_and_survive_redis_dying(
    start_gateway: GatewayFactory, redis_server: RedisProcess
) -> None:
    redis_url = f"redis://127.0.0.1:{redis_server.port}/0"
    a = start_gateway(redis_url=redis_url).url
    b = start_gateway(redis_url=redis_url).url

    assert _ask(a, "Who painted the Mona Lisa?").headers["x-precog-cache"] == "miss"
    wait_for(lambda: len(entries(a)) == 1)
    shared_hit = _ask(b, "Who painted the Mona Lisa?")
    assert shared_hit.headers["x-precog-cache"] == "hit"
    assert shared_hit.headers["x-precog-tier"] == "shared"
    assert entries(b) == []

    assert _ask(b, "Who discovered penicillin?").headers["x-precog-cache"] == "miss"
    wait_for(lambda: len(entries(b)) == 1)
    removed = httpx.post(f"{a}/admin/invalidate", json={"substring": "penicillin"}, timeout=10).json()
    assert removed == {"invalidated": 0}
    wait_for(lambda: entries(b) == [])
    assert _ask(a, "Who discovered penicillin?").headers["x-precog-cache"] == "miss"

    wait_for(
        lambda: (
            (httpx.get(f"{a}/admin/stats", timeout=10).json()["shared_tier"]["cluster_counters"] or {}).get(
                "default|test-model|hit", 0
            )
            >= 1
        )
    )

    redis_server.kill()
    assert _ask(a, "Who painted the Mona Lisa?").headers["x-precog-cache"] == "hit"
    assert _ask(b, "What is the speed of light?").headers["x-precog-cache"] == "miss"
    wait_for(lambda: not _shared_up(a) and not _shared_up(b))
    assert "precog_gateway_shared_tier_up 0.0" in httpx.get(f"{a}/metrics", timeout=10).text
    ready = httpx.get(f"{b}/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["checks"]["shared_tier"].startswith("degraded")
    wait_for(lambda: len(entries(b)) == 1)
    assert _ask(b, "What is the speed of light?").headers["x-precog-cache"] == "hit"

    redis_server.start()
    wait_for(lambda: _shared_up(a) and _shared_up(b), timeout=15)
    assert _ask(a, "How far away is the Moon?").headers["x-precog-cache"] == "miss"
    wait_for(lambda: len(entries(a)) == 3)
    assert _ask(b, "How far away is the Moon?").headers["x-precog-tier"] == "shared"
