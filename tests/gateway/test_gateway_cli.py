"""`precog gateway serve` refuses bad settings with a message that names the setting and its variable."""

from __future__ import annotations

import os
import subprocess
import sys


def test_bad_setting_names_its_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "precog.cli", "gateway", "serve"],
        env={**os.environ, "PRECOG_GATEWAY_SIMILARITY_THRESHOLD": "1.7"},
        capture_output=True, text=True, timeout=120,
    )
    message = " ".join(result.stderr.replace("│", " ").split())  # typer draws a box and wraps lines
    assert result.returncode != 0
    assert "PRECOG_GATEWAY_SIMILARITY_THRESHOLD" in message
    assert "less than or equal to 1" in message
