"""A deterministic OpenAI-compatible upstream over real HTTP, a small corpus and settings that use them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from precog.precompute import PrecomputeSettings
from tests.conftest import _free_port
from tests.precompute.fake_upstream import MODEL, FakeUpstream

DOCS = {
    "rivers.txt": (
        "The Danube flows through ten countries before reaching the Black Sea. "
        "Vienna, Budapest and Belgrade all stand on its banks. "
        "The river carries barges loaded with grain and steel. "
        "Its delta is one of the largest wetlands in Europe. "
        "Pelicans and herons nest among the reeds of the delta. "
        "Floods in spring can raise the water by several metres."
    ),
    "volcanoes.md": (
        "# Volcanoes\n\nMount Etna is the most active volcano in Europe. "
        "It rises above the city of Catania on the island of Sicily. "
        "Lava flows from Etna have buried villages many times. "
        "Farmers grow pistachios on its fertile volcanic soil. "
        "Scientists measure gas emissions to forecast eruptions. "
        "Ash clouds sometimes close the airport at Catania."
    ),
}


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(_free_port()) as server:
        yield server


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    upstream.behaviour.reset()
    return upstream


WRITER_MODEL = "fake-writer"


@pytest.fixture(scope="session")
def writer_upstream() -> Iterator[FakeUpstream]:
    """A second server playing another model: it asks its questions in another way."""
    with FakeUpstream(_free_port(), model=WRITER_MODEL, ask="Could you explain {}?") as server:
        yield server


@pytest.fixture
def writer(writer_upstream: FakeUpstream) -> FakeUpstream:
    writer_upstream.behaviour.reset()
    return writer_upstream


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("PRECOG_PRECOMPUTE_") or v == "PRECOG_CONFIG"]:
        monkeypatch.delenv(var)


def make_settings(url: str, **overrides: object) -> PrecomputeSettings:
    values: dict[str, object] = {
        "upstream_url": url,
        "model": MODEL,
        "system_prompt": "You answer questions about geography.",
        "tenant": "acme",
        "tokenizer": "simple",
        "chunk_tokens": 60,
        "chunk_overlap": 10,
        "max_queries_per_chunk": 4,
        "questions_per_round": 3,
        "max_rounds_per_chunk": 3,
        "concurrency": 2,
        "request_timeout": 10.0,
        # The fake's KV export is an instant reply, so the cost policy's choice would follow the load of the
        # machine; these tests check that KV is kept (the policy itself: test_kv_cost.py).
        "kv_policy": "always",
    }
    values.update(overrides)
    return PrecomputeSettings(**values)  # type: ignore[arg-type]
