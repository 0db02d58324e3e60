"""`precog up` (what `make run` starts) stops both services however it is stopped: Ctrl-C or a SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from precog.store import Store
from tests.gateway.support import free_port, wait_for

pytestmark = pytest.mark.slow


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_up_stops_the_backend_and_the_gateway(tmp_path: Path, stop: signal.Signals) -> None:
    store = tmp_path / "store"
    Store.open(store, progress=False).close()  # a store exists: no sample build
    backend, gateway = free_port(), free_port()
    command = [sys.executable, "-m", "precog", "up", "--store", str(store)]
    command += ["--backend-port", str(backend), "--gateway-port", str(gateway)]
    # Its own process group, so that nothing it started outlives the test even when the test fails.
    # SIGINT starts out ignored, the way a background job of a script inherits it (CI runners, nohup):
    # Ctrl-C must stop `precog up` all the same.
    up = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        urls = [f"http://127.0.0.1:{gateway}/healthz", f"http://127.0.0.1:{backend}/healthz"]
        assert all(_answers(url) for url in urls)
        up.send_signal(stop)
        assert up.wait(timeout=60) == 0
        wait_for(lambda: not any(_answers(url) for url in urls), timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
