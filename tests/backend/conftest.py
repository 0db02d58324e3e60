"""One engine per test session over the prepared SmolLM2 checkpoint (the server tests reuse it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from precog.backend import Engine, EngineConfig, prepared_model_dir
from precog.backend.engine.kv import PressState
from precog.backend.engine.sequence import Sequence
from precog.backend.server import create_app

# Sized for the tests: 512 blocks x 16 tokens = 8K tokens of KV (~370 MB), contexts up to 1K tokens.
TEST_ENGINE = {"max_model_len": 1024, "num_kv_blocks": 512, "max_num_seqs": 32, "max_num_batched_tokens": 512}


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return prepared_model_dir()


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> Engine:
    # One thread: the test machine's cores are shared, and spinning OpenMP threads then cost far more.
    return Engine(EngineConfig(model_dir=model_dir, num_threads=1, **TEST_ENGINE))


def press_state(seq: Sequence) -> PressState:
    """seq's token-scoring press state (the test asked for a press)."""
    assert isinstance(seq.kv_state, PressState), seq.kv_state
    return seq.kv_state


def wait_for_idle(engine: Engine, timeout: float = 10.0) -> None:
    """Wait until the engine holds no sequences and no KV blocks (the last step frees them just after
    the last token is sent); fail if that takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while (stats := engine.stats()).kv_blocks_used or stats.running or stats.waiting:
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy after {timeout}s: {stats}")
        time.sleep(0.02)


@contextmanager
def serving(engine: Engine, store_path: Path | None = None) -> Iterator[str]:
    """The real server (uvicorn, HTTP on a free port) over `engine` while the block runs; yields its URL."""
    app = create_app(engine, store_path=store_path)
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="test-backend-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the backend server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.fixture(scope="module")
def server_url(engine: Engine) -> Iterator[str]:
    """The server over the session's engine, per test module: the engine's step loop then runs only while
    server tests do, and starting it costs no model load."""
    with serving(engine) as url:
        yield url
