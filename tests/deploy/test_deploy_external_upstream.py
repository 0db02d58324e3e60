"""The external-upstream profile for real: `precog gateway serve` with deploy/profiles/external-upstream.toml
in front of a second OpenAI-compatible server on another port (our own backend stands in for vLLM/SGLang),
all over HTTP. A first question is relayed and written back; asking it again is served from the store."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.manifests import DEPLOY
from tests.gateway.support import free_port, serve_cli, wait_for

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
ADMIN = "external-profile"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    upstream_port, gateway_port = free_port(), free_port()
    store = tmp_path_factory.mktemp("external") / "store"
    upstream = serve_cli(
        ["backend", "serve", "--port", str(upstream_port), "--kv-memory-mb", "64", "--max-num-seqs", "4"],
        f"http://127.0.0.1:{upstream_port}/healthz",
        env={"PRECOG_ENGINE_NUM_THREADS": "1", "PRECOG_ENGINE_MAX_MODEL_LEN": "1024"},
    )
    processes = [upstream]
    try:
        # Only what a deployment sets per site comes from the environment; the rest is the profile's.
        env = {
            "PRECOG_CONFIG": str(DEPLOY / "profiles" / "external-upstream.toml"),
            "PRECOG_GATEWAY_HOST": "127.0.0.1",
            "PRECOG_GATEWAY_PORT": str(gateway_port),
            "PRECOG_GATEWAY_STORE_PATH": str(store),
            "PRECOG_GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
            "PRECOG_GATEWAY_UPSTREAM_API_KEY": "stand-in-key",
            "PRECOG_GATEWAY_ADMIN_TOKEN": ADMIN,
        }
        processes.append(serve_cli(["gateway", "serve"], f"http://127.0.0.1:{gateway_port}/readyz", env=env))
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _stored(url: str) -> int:
    response = httpx.get(f"{url}/admin/entries", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    response.raise_for_status()
    return len(response.json()["entries"])


def test_miss_is_relayed_to_the_external_server_then_served_as_a_hit(gateway: str) -> None:
    models = httpx.get(f"{gateway}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [MODEL]  # `models = []`: the upstream's own list

    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 24,
    }
    first = httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=300)
    assert first.status_code == 200, first.text
    assert first.headers["x-precog-cache"] == "miss"
    answer = first.json()["choices"][0]["message"]["content"]
    assert answer.strip()

    wait_for(lambda: _stored(gateway) == 1, timeout=30)
    second = httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=60)
    assert second.headers["x-precog-cache"] == "hit"
    assert second.json()["choices"][0]["message"]["content"] == answer
