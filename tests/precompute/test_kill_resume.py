"""kill -9 at random moments, then the same command again: the store ends as after one clean run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import Store
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
        "precog.cli",
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


def test_kill_9_at_random_times_then_resume(fake: FakeUpstream, corpus: Path, tmp_path: Path) -> None:
    fake.behaviour.delay = 0.25
    config = tmp_path / "precompute.toml"
    config.write_text(CONFIG.format(url=fake.url, model=MODEL))

    started = time.monotonic()
    reference = subprocess.run(
        _command(corpus, tmp_path / "reference", config), capture_output=True, text=True
    )
    duration = time.monotonic() - started
    assert reference.returncode == 0, reference.stderr
    expected = _snapshot(tmp_path / "reference")
    assert len(expected) >= 8

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    store_path = tmp_path / "store"
    kills = 0
    for _ in range(5):
        process = subprocess.Popen(
            _command(corpus, store_path, config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            process.wait(timeout=rng.uniform(0.3, duration))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
    assert kills >= 1, f"no run was killed (seed {seed})"

    final = subprocess.run(_command(corpus, store_path, config), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    report = json.loads((tmp_path / "store.precompute").glob("*/report.json").__next__().read_text())
    assert report["complete"], report
    assert _snapshot(store_path) == expected, f"seed {seed}"
    assert report["entries_written"] == len(expected)
    leftovers = list((tmp_path / "store.precompute").glob("*/kv/*"))
    assert leftovers == [], "KV files of written entries must be cleaned up"
