"""Bad input and upstream failures: every one is an OpenAI-style error with the right status."""

from __future__ import annotations

import itertools
import json
import socketserver
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.conftest import GatewayFactory
from tests.gateway.fake_upstream import UpstreamState
from tests.gateway.support import chat, entries, free_port, wait_for


def _post(url: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return dict(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "test-model"}, "messages"),
        ({"model": "test-model", "messages": []}, "messages"),
        ({"model": "test-model", "messages": "hello"}, "messages"),
        ({"model": "test-model", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({**chat("hi"), "temperature": "hot"}, "temperature"),
        ({**chat("hi"), "temperature": 3}, "temperature"),
        ({**chat("hi"), "stream": "yes"}, "stream"),
        ({**chat("hi"), "max_tokens": 0}, "max_tokens"),
        ([1, 2, 3], None),
    ],
)
def test_wrong_types_and_values_are_400(gateway_url: str, body: object, param: str | None) -> None:
    error = _error(_post(gateway_url, body), 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_malformed_json_unknown_model_and_size_limit(start_gateway: GatewayFactory) -> None:
    url = start_gateway(max_request_bytes=4096).url
    raw = httpx.post(
        f"{url}/v1/chat/completions",
        content=b'{"model": "test-model", "messages": [',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert "JSON" in _error(raw, 400)["message"]
    unknown = _error(_post(url, chat("hi", model="gpt-9")), 404)
    assert unknown["code"] == "model_not_found" and unknown["param"] == "model"
    too_big = _error(_post(url, chat("x" * 5000)), 413)
    assert too_big["code"] == "request_too_large"

    def chunked() -> object:
        yield json.dumps(chat("y" * 5000)).encode()

    assert _error(httpx.post(f"{url}/v1/chat/completions", content=chunked(), timeout=10), 413)
    assert _error(httpx.get(f"{url}/v1/nothing-here", timeout=10), 404)
    assert entries(url) == []


def test_api_keys_and_rate_limit(start_gateway: GatewayFactory) -> None:
    url = start_gateway(api_keys={"good": "t1"}, rate_limit_per_minute=1, rate_limit_burst=3).url
    assert _error(_post(url, chat("hi")), 401)["code"] == "missing_api_key"
    assert _error(_post(url, chat("hi"), authorization="Bearer bad"), 401)["code"] == "invalid_api_key"
    statuses = [_post(url, chat(f"q{i}"), authorization="Bearer good").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = _post(url, chat("again"), authorization="Bearer good")
    assert _error(limited, 429)["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    assert _error(httpx.get(f"{url}/admin/stats", timeout=10), 403)["code"] == "admin_disabled"


def test_upstream_errors_map_to_5xx_and_open_the_breaker(
    start_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    url = start_gateway(breaker_failure_threshold=2, breaker_reset_s=3, upstream_read_timeout_s=0.5).url
    upstream_state.mode = "error500"
    assert _error(_post(url, chat("a")), 502)["code"] == "upstream_http_500"
    upstream_state.mode = "error503"
    assert _error(_post(url, chat("b")), 503)["code"] == "upstream_http_503"
    upstream_state.mode = "ok"
    tripped = _post(url, chat("c"))
    assert _error(tripped, 503)["code"] == "upstream_circuit_open"
    assert "retry-after" in tripped.headers
    assert "precog_gateway_breaker_state 2.0" in httpx.get(f"{url}/metrics", timeout=10).text
    time.sleep(3)
    assert _post(url, chat("d")).status_code == 200
    upstream_state.mode = "slow"
    assert _error(_post(url, chat("e")), 504)["code"] == "upstream_timeout"
    upstream_state.mode = "ok"
    assert entries(url) and all(e["query"] == "d" for e in entries(url))


def test_unreachable_upstream_is_502_after_retries(start_gateway: GatewayFactory) -> None:
    url = start_gateway(upstream_url=f"http://127.0.0.1:{free_port()}", upstream_retries=2).url
    error = _error(_post(url, chat("hi")), 502)
    assert error["code"] == "upstream_unreachable"
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["checks"]["store"] == "ok"
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


class _DroppingUpstream(socketserver.ThreadingTCPServer):
    """Reads each request; drops every other connection without a byte of answer, answers the rest."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.requests = itertools.count()
        listing = json.dumps({"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        self.answer = (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(listing)}\r\n\r\n{listing}"
        ).encode()
        super().__init__(("127.0.0.1", 0), _DroppingHandler)


class _DroppingHandler(socketserver.BaseRequestHandler):
    server: _DroppingUpstream

    def handle(self) -> None:
        self.request.recv(65536)
        if next(self.server.requests) % 2 == 1:
            self.request.sendall(self.server.answer)


@pytest.fixture
def dropping_upstream() -> Iterator[_DroppingUpstream]:
    server = _DroppingUpstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_dropped_connection_is_retried_for_reads_that_are_safe_to_repeat(
    start_gateway: GatewayFactory, dropping_upstream: _DroppingUpstream
) -> None:
    port = dropping_upstream.server_address[1]
    url = start_gateway(upstream_url=f"http://127.0.0.1:{port}", upstream_retries=1).url
    for _ in range(4):
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    assert next(dropping_upstream.requests) >= 8


def test_broken_stream_ends_with_an_error_event_and_is_not_stored(
    gateway_url: str, upstream_state: UpstreamState
) -> None:
    upstream_state.mode = "break"
    with httpx.stream(
        "POST", f"{gateway_url}/v1/chat/completions", json=chat("Tell me", stream=True), timeout=30
    ) as response:
        assert response.headers["x-precog-cache"] == "miss"
        body = b"".join(response.iter_raw())
    events = [line for line in body.split(b"\n\n") if line.strip()]
    assert json.loads(events[-1].removeprefix(b"data: "))["error"]["code"] == "upstream_disconnected"
    assert b"[DONE]" not in body
    upstream_state.mode = "ok"
    time.sleep(0.2)
    assert entries(gateway_url) == []


def test_client_disconnect_cancels_the_upstream_stream_and_stores_nothing(
    gateway_url: str, upstream_state: UpstreamState
) -> None:
    upstream_state.token_delay_s = 0.2
    with httpx.stream(
        "POST", f"{gateway_url}/v1/chat/completions", json=chat("Slow story", stream=True), timeout=30
    ) as response:
        next(response.iter_raw())
    wait_for(lambda: "Slow story" in upstream_state.streams)
    assert upstream_state.streams["Slow story"] == "cancelled"
    assert entries(gateway_url) == []
