"""End to end against the real model server (`precog backend serve`, SmolLM2-135M on the CPU) over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from precog.precompute import run_precompute
from precog.store import Embedder, KVBlob, Store, scope_key
from tests.precompute.conftest import make_settings

pytestmark = pytest.mark.slow

CORPUS = (
    "Mount Etna is the most active volcano in Europe. It rises above the city of Catania on the island of "
    "Sicily, and its eruptions have buried villages many times. Farmers grow pistachios and grapes on its "
    "fertile volcanic soil.\n\n"
    "The Danube is the second-longest river in Europe. It flows through ten countries, including Austria and "
    "Hungary, and passes through Vienna and Budapest before it reaches the Black Sea, where its delta forms "
    "one of the largest wetlands on the continent."
)


@pytest.fixture(scope="module")
def backend(free_port_module: int) -> Iterator[str]:
    url = f"http://127.0.0.1:{free_port_module}"
    process = subprocess.Popen(
        [sys.executable, "-m", "precog", "backend", "serve", "--port", str(free_port_module)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, "the backend exited during start-up"
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the backend did not become healthy"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def free_port_module() -> int:
    from tests.conftest import _free_port

    return _free_port()


def test_two_chunk_corpus_into_a_store_with_kv_caches(backend: str, tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "europe.txt").write_text(CORPUS)
    settings = make_settings(
        backend,
        model=None,
        tokenizer="auto",
        chunk_tokens=56,
        chunk_overlap=8,
        max_queries_per_chunk=2,
        questions_per_round=3,
        max_rounds_per_chunk=2,
        question_max_tokens=64,
        answer_max_tokens=40,
        concurrency=4,
        request_timeout=300.0,
    )
    report, _ = run_precompute(settings, tmp_path / "corpus", tmp_path / "store", progress=False)
    assert report["complete"], report
    assert report["chunks"] == 2
    assert report["entries_written"] == report["kv_blobs"] > 0
    assert report["tokens_spent"] > 0

    model = httpx.get(f"{backend}/v1/models").json()["data"][0]["id"]
    scope = scope_key(model, "You answer questions about geography.", "acme")
    store = Store.open(tmp_path / "store", read_only=True, progress=False)
    try:
        entries = list(store.entries())
        assert {e.scope for e in entries} == {scope}
        embedder = Embedder()
        for entry in entries:
            assert entry.query.endswith("?") and entry.answer
            blob = store.get_blob(entry.kv_blob_id)
            assert isinstance(blob, KVBlob) and blob.model == model and blob.num_layers == 30
            hits = store.search(scope, embedder.encode([entry.query])[0], 1)
            assert hits[0][0].id == entry.id
    finally:
        store.close()
