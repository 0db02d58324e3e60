"""End to end: the official openai SDK against `precog gateway serve` in front of `precog backend serve`
(SmolLM2-135M on the CPU), all real processes over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.gateway.support import free_port, serve_cli, wait_for

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
SYSTEM = "Answer in one short sentence."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    backend_port, gateway_port = free_port(), free_port()
    store = tmp_path_factory.mktemp("e2e") / "store"
    processes = [
        serve_cli(
            ["backend", "serve", "--port", str(backend_port)], f"http://127.0.0.1:{backend_port}/healthz"
        )
    ]
    try:
        processes.append(
            serve_cli(
                [
                    "gateway",
                    "serve",
                    "--port",
                    str(gateway_port),
                    "--store-path",
                    str(store),
                    "--upstream-url",
                    f"http://127.0.0.1:{backend_port}",
                ],
                f"http://127.0.0.1:{gateway_port}/readyz",
                env={"PRECOG_GATEWAY_ADMIN_TOKEN": "e2e"},
            )
        )
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def _stored(url: str) -> int:
    response = httpx.get(f"{url}/admin/entries", headers={"authorization": "Bearer e2e"}, timeout=10)
    return len(response.json()["entries"])


def test_openai_sdk_miss_hit_paraphrase_and_number_trap(stack: str) -> None:
    client = openai.OpenAI(base_url=f"{stack}/v1", api_key="unused", max_retries=0, timeout=300)

    def ask(question: str) -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=_messages(question), temperature=0, max_tokens=64
        )
        completion = raw.parse()
        return raw.headers["x-precog-cache"], completion.choices[0].message.content or ""

    outcome, answer = ask("What is the capital of France?")
    assert outcome == "miss" and "Paris" in answer
    wait_for(lambda: _stored(stack) == 1, timeout=30)
    assert ask("What is the capital of France?") == ("hit", answer)
    assert ask("what's the capital of France?") == ("hit", answer)

    assert ask("What is 2 plus 2?")[0] == "miss"
    wait_for(lambda: _stored(stack) == 2, timeout=30)
    assert ask("What is 2 plus 3?")[0] == "miss"


def test_openai_sdk_streaming_miss_then_hit(stack: str) -> None:
    client = openai.OpenAI(base_url=f"{stack}/v1", api_key="unused", max_retries=0, timeout=300)

    def ask(question: str) -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=_messages(question), temperature=0, max_tokens=64, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        return raw.headers["x-precog-cache"], text

    before = _stored(stack)
    outcome, answer = ask("Which ocean is the largest?")
    assert outcome == "miss" and answer.strip()
    wait_for(lambda: _stored(stack) == before + 1, timeout=30)
    assert ask("Which ocean is the largest?") == ("hit", answer)
