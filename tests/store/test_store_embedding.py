"""The shared embedder: the real all-MiniLM-L6-v2, unit vectors, meaning reflected in cosine similarity."""

from __future__ import annotations

import numpy as np
import pytest

from precog.store import Embedder, Entry, Store


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_encode_gives_unit_float32_rows(embedder: Embedder) -> None:
    assert (embedder.name, embedder.dim) == ("all-MiniLM-L6-v2", 384)
    vectors = embedder.encode(["How do I reset my password?", "What is the refund policy?"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.encode("not a list")  # type: ignore[arg-type]


def test_paraphrases_are_closer_than_unrelated_questions(embedder: Embedder) -> None:
    question, paraphrase, unrelated = embedder.encode(
        ["How can I change my password?", "What are the steps to reset my password?", "Best pizza in Naples?"]
    )
    assert question @ paraphrase > 0.6 > question @ unrelated


def test_embedder_vectors_search_a_store(embedder: Embedder, tmp_path) -> None:
    texts = ["How can I change my password?", "Where is my order?", "Do you ship to Canada?"]
    vectors = embedder.encode(texts)
    with Store.open(tmp_path / "s", embedding_model=embedder.name, dim=embedder.dim, progress=False) as store:
        store.put_many(
            [
                Entry(scope="t", query=t, answer="a", embedding=v, model="m")
                for t, v in zip(texts, vectors, strict=True)
            ]
        )
        query = embedder.encode(["I forgot my password, how do I reset it?"])[0]
        best, score = store.search("t", query, k=1)[0]
        assert best.query == texts[0] and score > 0.6
