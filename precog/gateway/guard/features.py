"""The classifier's view of a pair: cosine plus what the alignment could not explain away."""

from __future__ import annotations

import math

import numpy as np

from precog.gateway.guard.comparison import Comparison
from precog.gateway.guard.wordvectors import WordVectors

FEATURE_NAMES = (
    "cosine",
    "matched_share",
    "left_content_words",
    "right_content_words",
    "content_replaced",
    "content_on_one_side",
    "changed_span_similarity",
    "typos_and_word_forms",
    "synonyms_swapped",
    "moved_words",
    "filler_changes",
    "function_word_changes",
    "question_word_changed",
    "unpaired_quantities",
    "names_on_one_side",
    "length_log_ratio",
    "left_coverage",
    "right_coverage",
    "cosine_times_changed_words",
)


def feature_vector(comparison: Comparison, cosine: float, vectors: WordVectors) -> np.ndarray:
    """One row of FEATURE_NAMES for `comparison`; `cosine` is the sentence embeddings' similarity."""
    alignment = comparison.alignment
    left = [t.norm for t in alignment.left_content]
    right = [t.norm for t in alignment.right_content]
    total = comparison.left_length + comparison.right_length
    replaced = bool(left and right)
    return np.array(
        [
            cosine,
            2 * alignment.matched / total if total else 1.0,
            math.log1p(len(left)),
            math.log1p(len(right)),
            float(replaced),
            float(bool(left) != bool(right)),
            vectors.similarity(left, right) if replaced else 0.0,
            math.log1p(alignment.typos + alignment.same_stem),
            math.log1p(alignment.synonyms),
            math.log1p(alignment.moved),
            math.log1p(alignment.fillers),
            math.log1p(alignment.function_changes),
            float(comparison.question_word_changed),
            float(comparison.unpaired_quantities),
            float(comparison.entities_one_side),
            abs(math.log((comparison.left_length + 1) / (comparison.right_length + 1))),
            vectors.coverage(left, right),
            vectors.coverage(right, left),
            cosine * math.log1p(len(left) + len(right)),
        ],
        dtype=np.float64,
    )
