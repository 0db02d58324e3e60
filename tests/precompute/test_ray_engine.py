"""The Ray Data engine on a local Ray instance: same stages, checkpoint and store as the local engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from precog.precompute import run_precompute
from precog.store import Store
from tests.precompute.conftest import make_settings
from tests.precompute.fake_upstream import FakeUpstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _queries(store_path: Path) -> dict[str, tuple[str, bool]]:
    store = Store.open(store_path, read_only=True, progress=False)
    try:
        return {e.query: (e.answer, e.kv_blob_id is not None) for e in store.entries()}
    finally:
        store.close()


def test_ray_engine_builds_the_same_store_as_the_local_engine_and_resumes(
    local_ray: None, fake: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    local, _ = run_precompute(make_settings(fake.url), corpus, tmp_path / "local", progress=False)
    store_path = tmp_path / "ray"
    budgeted = make_settings(fake.url, max_total_tokens=local["tokens_spent"] // 3)
    partial, _ = run_precompute(budgeted, corpus, store_path, engine="ray", progress=False)
    assert not partial["complete"] and partial["stopped_reason"] == "token budget reached"
    assert partial["entries_written"] == len(_queries(store_path))

    remote, _ = run_precompute(make_settings(fake.url), corpus, store_path, engine="ray", progress=False)
    assert remote["complete"] and remote["engine"] == "ray"
    assert remote["entries_written"] == remote["kv_blobs"] == local["entries_written"] > 0
    assert _queries(store_path) == _queries(tmp_path / "local")

    fake.behaviour.requests.clear()
    again, _ = run_precompute(make_settings(fake.url), corpus, store_path, engine="ray", progress=False)
    assert fake.behaviour.requests == [] and again["entries_written"] == remote["entries_written"]


def test_ray_engine_takes_turns_with_question_writers_like_the_local_engine(
    local_ray: None, fake: FakeUpstream, writer: FakeUpstream, corpus: Path, tmp_path: Path
) -> None:
    settings = make_settings(
        fake.url, max_queries_per_chunk=8, max_rounds_per_chunk=4, question_writers=[{"url": writer.url}]
    )
    local, _ = run_precompute(settings, corpus, tmp_path / "local", progress=False)
    remote, _ = run_precompute(settings, corpus, tmp_path / "ray", engine="ray", progress=False)
    assert remote["complete"] and len(remote["queries_accepted_by_writer"]) == 2
    assert remote["queries_accepted_by_writer"] == local["queries_accepted_by_writer"]
    assert _queries(tmp_path / "ray") == _queries(tmp_path / "local")
