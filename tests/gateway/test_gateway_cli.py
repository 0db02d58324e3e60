"""`precog gateway serve` refuses bad settings with a message that names the setting and its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_bad_setting_names_its_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "precog", "gateway", "serve"],
        env={**os.environ, "PRECOG_GATEWAY_SIMILARITY_THRESHOLD": "1.7"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = " ".join(result.stderr.replace("│", " ").split())  # typer draws a box and wraps lines
    assert result.returncode != 0
    assert "PRECOG_GATEWAY_SIMILARITY_THRESHOLD" in message
    assert "less than or equal to 1" in message


def test_a_replica_or_writer_without_redis_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from precog.gateway.cli import app

    monkeypatch.delenv("PRECOG_GATEWAY_REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["serve"], env={"PRECOG_GATEWAY_STORE_ROLE": "replica"})
    assert result.exit_code != 0
    assert "needs redis_url and snapshot_root" in " ".join(result.output.replace("│", " ").split())
    writer = CliRunner().invoke(app, ["writer"])
    assert writer.exit_code != 0 and "needs redis_url" in " ".join(writer.output.replace("│", " ").split())
