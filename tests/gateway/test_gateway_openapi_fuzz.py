"""Schemathesis fuzzes every route of the gateway's OpenAPI spec against a live gateway: no 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from precog.gateway import GatewaySettings, create_app
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


def _fuzz(operation: Any, base_url: str, statuses: Counter[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
        statuses[response.status_code] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"] and error["type"], response.text

    run()


@pytest.mark.slow
def test_no_input_makes_the_gateway_fail(fuzzed_gateway: ServerThread) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    statuses: Counter[int] = Counter()
    for operation in operations:
        _fuzz(operation, fuzzed_gateway.url, statuses)
    assert statuses[200] > 50 and sum(n for status, n in statuses.items() if 400 <= status < 500) > 50, (
        statuses
    )
