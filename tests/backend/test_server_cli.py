"""`precog backend serve` as a user runs it: a subprocess that loads the model, answers, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from precog.shell.cli import app

pytestmark = pytest.mark.slow

SMALL_ENGINE = {
    "PRECOG_ENGINE_MAX_MODEL_LEN": "1024",
    "PRECOG_ENGINE_NUM_THREADS": "1",
    "PRECOG_ENGINE_MAX_NUM_SEQS": "4",
}


def serve(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "precog", "backend", "serve", *args]
    env = {**os.environ, **SMALL_ENGINE}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_serve_answers_the_sdk_and_stops_on_sigterm(model_dir: Path, free_port: int) -> None:
    proc = serve("--port", str(free_port), "--model-dir", str(model_dir), "--kv-memory-mb", "64")
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "server did not become healthy"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120) as client:
            model = client.models.list().data[0].id
            assert model == model_dir.name
            reply = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=12,
                temperature=0,
            )
            assert "Paris" in (reply.choices[0].message.content or "")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as the process's exit status.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert '"msg": "backend serving"' in output
    assert "Application shutdown complete" in output


def test_serve_rejects_bad_settings_with_their_name(model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["backend", "serve", "--port", "70000", "--model-dir", str(model_dir)])
    assert result.exit_code != 0
    assert "PRECOG_BACKEND_PORT" in result.output
