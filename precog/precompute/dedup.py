"""Drop near-duplicate questions: against everything already stored in the scope and everything accepted in
this job. StorInfer drops a question whose embedding has cosine >= 0.99 to any stored one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from precog.store import normalise_text


class Deduplicator:
    """Thread-safe. `stored_similarity(text, vector)` gives the best similarity to anything already stored
    (1.0 for the same text); without it (a Ray worker) only this job's own questions are compared."""

    def __init__(
        self, threshold: float, dim: int, stored_similarity: Callable[[str, np.ndarray], float] | None = None
    ) -> None:
        self._stored_similarity = stored_similarity
        self.threshold = threshold
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._texts: set[str] = set()
        self._lock = threading.Lock()

    def seed(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Questions accepted earlier in this job (replayed from the work log)."""
        with self._lock:
            self._texts.update(normalise_text(t) for t in texts)
            self._vectors = np.concatenate([self._vectors, vectors.astype(np.float32)])

    def _duplicate(self, text: str, vector: np.ndarray) -> bool:
        if normalise_text(text) in self._texts:
            return True
        if len(self._vectors) and float(np.max(self._vectors @ vector)) >= self.threshold:
            return True
        return self._stored_similarity is not None and self._stored_similarity(text, vector) >= self.threshold

    def accept(self, texts: Sequence[str], vectors: np.ndarray, limit: int) -> tuple[list[int], int]:
        """Judge questions in order until `limit` are accepted: (indices of the new ones, duplicates seen).
        New ones are remembered at once, so later ones, in the same batch too, are compared with them."""
        accepted: list[int] = []
        duplicates = 0
        with self._lock:
            for index, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                if len(accepted) >= limit:
                    break
                if self._duplicate(text, vector):
                    duplicates += 1
                    continue
                self._texts.add(normalise_text(text))
                self._vectors = np.concatenate([self._vectors, vector[None, :].astype(np.float32)])
                accepted.append(index)
        return accepted, duplicates
