"""deploy/docker/precompute-job.sh, the precompute container's entry point, for real: it refuses to start
while the store's writer holds it, and otherwise extends the store from the corpus (through the fake
upstream, with the configured API key) and publishes a snapshot that opens with the same entries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from precog.store import Store, current_snapshot
from tests.precompute.fake_upstream import MODEL, FakeUpstream

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "precompute-job.sh"


def _job_env(tmp_path: Path, fake: FakeUpstream, corpus: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("precog", f'"{sys.executable}" -m precog'), ("python", f'"{sys.executable}"')):
        shim = bin_dir / name  # the image's entry points, here this interpreter's
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PRECOG_CORPUS": str(corpus),
        "PRECOG_GATEWAY_STORE_PATH": str(tmp_path / "store"),
        "PRECOG_GATEWAY_SNAPSHOT_ROOT": str(tmp_path / "snapshots"),
        "PRECOG_PRECOMPUTE_UPSTREAM_URL": fake.url,
        "PRECOG_PRECOMPUTE_UPSTREAM_API_KEY": "job-key",
        "PRECOG_PRECOMPUTE_MODEL": MODEL,
        "PRECOG_PRECOMPUTE_TOKENIZER": "simple",
        "PRECOG_PRECOMPUTE_CHUNK_TOKENS": "60",
        "PRECOG_PRECOMPUTE_CHUNK_OVERLAP": "10",
        "PRECOG_PRECOMPUTE_MAX_QUERIES_PER_CHUNK": "2",
        "PRECOG_PRECOMPUTE_MAX_ROUNDS_PER_CHUNK": "1",
        "PRECOG_PRECOMPUTE_REQUEST_TIMEOUT": "10",
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def test_job_waits_for_the_writer_then_publishes_a_snapshot(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    env = _job_env(tmp_path, fake, corpus)
    with Store.open(tmp_path / "store", progress=False):  # the writer, still running
        refused = _run({**env, "PRECOG_STORE_WAIT_S": "0"})
    assert refused.returncode == 3 and "stop the writer first" in refused.stderr
    assert not fake.behaviour.requests, "nothing was asked while the store was held"

    job = _run(env)
    assert job.returncode == 0, job.stdout + job.stderr
    assert fake.behaviour.authorizations and set(fake.behaviour.authorizations) == {"Bearer job-key"}
    snapshot = current_snapshot(tmp_path / "snapshots")
    assert snapshot is not None
    with Store.open(tmp_path / "store", read_only=True, progress=False) as store:
        expected = sorted(entry.id for entry in store.entries())
    with Store.open(snapshot.path, read_only=True, create=False, progress=False) as published:
        assert expected and sorted(entry.id for entry in published.entries()) == expected
