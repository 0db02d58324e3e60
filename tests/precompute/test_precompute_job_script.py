"""deploy/docker/precompute-job.sh and seed-store.sh, the scripts the containers run, for real: a
precompute run against the fake upstream (with an API key) publishes a snapshot, and a replica's store
seeded from it holds the same entries; a seeded store is kept on restart, and no snapshot means empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from store import Store
from tests.precompute.fake_upstream import MODEL, FakeUpstream

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "docker"


def _run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_job_publishes_a_snapshot_that_seeds_a_replica(
    fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "precog"  # the image's `precog` entry point, here this interpreter's
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m precog.cli "$@"\n')
    shim.chmod(0o755)
    snapshots = tmp_path / "snapshots"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PRECOG_CORPUS": str(corpus),
        "PRECOG_WORK_STORE": str(tmp_path / "work" / "store"),
        "PRECOG_SNAPSHOT_DIR": str(snapshots),
        "PRECOG_SNAPSHOT": str(snapshots / "latest.tar.gz"),
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
    job = _run("precompute-job.sh", env)
    assert job.returncode == 0, job.stdout + job.stderr
    latest = snapshots / "latest.tar.gz"
    assert latest.is_symlink() and latest.resolve().parent == snapshots
    assert fake.behaviour.authorizations and set(fake.behaviour.authorizations) == {"Bearer job-key"}

    replica = tmp_path / "replica" / "store"
    seeded = _run("seed-store.sh", env, str(replica))
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    with Store.open(tmp_path / "work" / "store", read_only=True, progress=False) as work:
        expected = sorted(entry.id for entry in work.entries())
    with Store.open(replica, read_only=True, progress=False) as copy:
        assert sorted(entry.id for entry in copy.entries()) == expected and expected

    again = _run("seed-store.sh", env, str(replica))
    assert again.returncode == 0 and "keeping it" in again.stdout

    empty = _run(
        "seed-store.sh", {**env, "PRECOG_SNAPSHOT": str(tmp_path / "none.tar.gz")}, str(tmp_path / "e")
    )
    assert empty.returncode == 0 and "empty store" in empty.stdout
