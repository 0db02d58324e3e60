"""Schemathesis fuzzes every route of the gateway's OpenAPI spec against a live gateway: no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway import GatewaySettings, create_app
from tests.gateway.support import ServerThread

ADMIN = "fuzz-admin"


@pytest.fixture(scope="module")
def fuzzed_gateway(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any, guard: Any, upstream: ServerThread
) -> Iterator[ServerThread]:
    settings_ = GatewaySettings(
        upstream_url=upstream.url,
        store_path=tmp_path_factory.mktemp("fuzz") / "store",
        admin_token=ADMIN,
        rate_limit_per_minute=0,
    )
    server = ServerThread(create_app(settings_, embedder=embedder, guard=guard)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_gateway: ServerThread) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_gateway_fail(case: schemathesis.Case, fuzzed_gateway: ServerThread) -> None:
    response = case.call(
        base_url=fuzzed_gateway.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"], response.text
