"""Gateway suite fixtures: real servers over real HTTP (uvicorn threads), one embedding model a session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from precog.gateway import GatewaySettings, create_app
from precog.store import Embedder
from tests.gateway.fake_upstream import UpstreamState, create_upstream
from tests.gateway.support import ServerThread


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="session")
def guard() -> Any:
    from precog.gateway.guard import Guard

    return Guard()


@pytest.fixture(scope="session")
def upstream_state() -> UpstreamState:
    return UpstreamState()


@pytest.fixture(scope="session")
def upstream(upstream_state: UpstreamState) -> Iterator[ServerThread]:
    server = ServerThread(create_upstream(upstream_state)).start()
    yield server
    server.stop()


GatewayFactory = Callable[..., ServerThread]


@pytest.fixture
def start_gateway(
    tmp_path: Path, embedder: Embedder, guard: Any, upstream: ServerThread, upstream_state: UpstreamState
) -> Iterator[GatewayFactory]:
    """Start gateways with fresh stores; settings can be overridden per call."""
    upstream_state.reset()
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        values: dict[str, Any] = {
            "upstream_url": upstream.url,
            "store_path": tmp_path / f"store-{len(servers)}",
            "rate_limit_per_minute": 0,
            "upstream_retry_backoff_s": 0.01,
        }
        values.update(overrides)
        settings = GatewaySettings(**values)
        server = ServerThread(create_app(settings, embedder=embedder, guard=guard)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway_url(start_gateway: GatewayFactory) -> str:
    return start_gateway().url
