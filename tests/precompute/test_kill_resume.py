"""kill -9 at random moments, then the same command again: the store ends as after one clean run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from precog.store import Store
from tests.precompute.fake_upstream import MODEL, FakeUpstream

pytestmark = pytest.mark.slow

CONFIG = """
[precompute]
upstream_url = "{url}"
model = "{model}"
system_prompt = "You answer questions about geography."
tenant = "acme"
tokenizer = "simple"
chunk_tokens = 40
chunk_overlap = 5
max_queries_per_chunk = 4
questions_per_round = 2
max_rounds_per_chunk = 4
concurrency = 1
"""


def _command(corpus: Path, store: Path, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "precog",
        "precompute",
        "--corpus",
        str(corpus),
        "--store",
        str(store),
        "--config",
        str(config),
        "--no-progress",
    ]


def _snapshot(store_path: Path) -> dict[str, tuple[str, str, bool]]:
    store = Store.open(store_path, read_only=True, progress=False)
    try:
        return {e.id: (e.query, e.answer, e.kv_blob_id is not None) for e in store.entries()}
    finally:
        store.close()


def _log_size(state: Path) -> int:
    return sum(p.stat().st_size for p in state.glob("*/log.jsonl"))


def _wait_for_work(process: subprocess.Popen[bytes], state: Path, timeout: float = 120.0) -> bool:
    """Block until the run appends to its work log (start-up is over); False if it exited first."""
    before = _log_size(state)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if _log_size(state) > before:
            return True
        time.sleep(0.02)
    return False


def test_kill_9_at_random_times_then_resume(fake: FakeUpstream, corpus: Path, tmp_path: Path) -> None:
    fake.behaviour.delay = 0.1
    config = tmp_path / "precompute.toml"
    config.write_text(CONFIG.format(url=fake.url, model=MODEL))

    reference = subprocess.Popen(_command(corpus, tmp_path / "reference", config), stderr=subprocess.PIPE)
    assert _wait_for_work(reference, tmp_path / "reference.precompute")
    started = time.monotonic()
    _, stderr = reference.communicate(timeout=300)
    work_seconds = time.monotonic() - started
    assert reference.returncode == 0, stderr.decode()
    expected = _snapshot(tmp_path / "reference")
    assert len(expected) >= 8

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    store_path, state = tmp_path / "store", tmp_path / "store.precompute"
    kills = 0
    for _ in range(2):
        process = subprocess.Popen(_command(corpus, store_path, config), stderr=subprocess.DEVNULL)
        if _wait_for_work(process, state):
            time.sleep(rng.uniform(0.0, work_seconds / 2))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
    assert kills >= 1, f"no run was killed (seed {seed})"

    final = subprocess.run(_command(corpus, store_path, config), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    report = json.loads(next(state.glob("*/report.json")).read_text())
    assert report["complete"], report
    assert _snapshot(store_path) == expected, f"seed {seed}"
    assert report["entries_written"] == len(expected)
    assert list(state.glob("*/kv/*")) == [], "KV files of written entries must be cleaned up"
