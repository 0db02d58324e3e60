"""bench/gpu_check.sh: valid bash, and on a machine without a GPU it stops at once with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"


def test_gpu_check_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_gpu_check_without_a_gpu_exits_non_zero_and_says_why(tmp_path: Path) -> None:
    # CUDA_VISIBLE_DEVICES="" hides any GPU from torch, so this is the no-GPU path on every machine.
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2
    assert "gpu_check: no" in result.stderr and "GPU" in result.stderr
    assert not out.exists(), "nothing is written when there is nothing to check"
