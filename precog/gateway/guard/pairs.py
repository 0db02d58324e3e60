"""The labelled cache-safety pairs of fow-cache, split once for training and held-out evaluation.

fow-cache calls `a` the cached question and `b` the new one, so `b` is the query and `a` the candidate.
The split is stratified by category, style and label, and depends only on the seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from precog.store import Embedder

DEFAULT_SEED = 0
DEFAULT_TEST_SHARE = 0.4


@dataclass(frozen=True, slots=True)
class LabelledPair:
    id: str
    category: str
    style: str
    query: str
    candidate: str
    same_answer: bool


def question_pairs() -> list[LabelledPair]:
    """All 600 question pairs (needs the `data` extra: fow-cache)."""
    from fow_cache import load_questions

    return [
        LabelledPair(
            item["id"],
            item["category"],
            item.get("style", ""),
            item["b"],
            item["a"],
            bool(item["same_answer"]),
        )
        for item in load_questions()
    ]


def split(
    pairs: Sequence[LabelledPair], seed: int = DEFAULT_SEED, test_share: float = DEFAULT_TEST_SHARE
) -> tuple[list[LabelledPair], list[LabelledPair]]:
    """(train, test): each (category, style, label) stratum shuffled with `seed` and cut at `test_share`."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must lie in (0, 1), got {test_share}")
    strata: dict[tuple[str, str, bool], list[LabelledPair]] = defaultdict(list)
    for pair in sorted(pairs, key=lambda p: p.id):
        strata[(pair.category, pair.style, pair.same_answer)].append(pair)
    rng = random.Random(seed)
    train: list[LabelledPair] = []
    test: list[LabelledPair] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        cut = round(len(members) * test_share)
        test += members[:cut]
        train += members[cut:]
    return train, test


def cosine_similarities(pairs: Sequence[LabelledPair], embedder: Embedder | None = None) -> np.ndarray:
    """Cosine of query and candidate under the store's embedding model (all-MiniLM-L6-v2)."""
    texts = sorted({text for pair in pairs for text in (pair.query, pair.candidate)})
    vectors = dict(zip(texts, (embedder or Embedder()).encode(texts), strict=True))
    return np.array([float(vectors[p.query] @ vectors[p.candidate]) for p in pairs])
