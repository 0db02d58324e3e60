"""Fixtures of the store suite: real stores in tmp_path, and entries with controllable vectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from precog.store import Entry, Store

DIM = 384


def unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    shape = (DIM,) if n is None else (n, DIM)
    vectors = rng.standard_normal(shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def unit_vectors(rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    return lambda n: unit(rng, n)


@pytest.fixture
def make_entry(rng: np.random.Generator) -> Callable[..., Entry]:
    counter = iter(range(10**9))

    def make(
        scope: str = "scope-a", query: str | None = None, vector: np.ndarray | None = None, **fields
    ) -> Entry:
        n = next(counter)
        return Entry(
            scope=scope,
            query=query if query is not None else f"question number {n}",
            answer=f"answer number {n}",
            embedding=vector if vector is not None else unit(rng),
            model="test-model",
            **fields,
        )

    return make


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    with Store.open(store_path, progress=False) as opened:
        yield opened
