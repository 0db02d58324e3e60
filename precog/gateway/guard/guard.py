"""The guard: the second stage after vector search, deciding whether a close stored question asks the same.

Stages, cheapest first: identical once normalised → accept; cosine under a floor → reject; a typed
mismatch (number, date, unit, negation, direction, entity) → reject; otherwise a classifier over the
alignment features decides, and a question word swapped alone for another class ("when did X leave" /
"how did X leave") vetoes its accept. The veto runs after the classifier, so the shipped weights (fitted
without it) stay what `python -m precog.gateway.guard.train` reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from precog.gateway.guard import lexicon
from precog.gateway.guard.checks import question_word_check
from precog.gateway.guard.classifier import WEIGHTS_FILE, PairClassifier
from precog.gateway.guard.comparison import Comparison, compare
from precog.gateway.guard.features import FEATURE_NAMES, feature_vector
from precog.gateway.guard.wordvectors import WordVectors

DEFAULT_MIN_SIMILARITY = 0.5


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """Serve the stored answer or not, why, and the guard's confidence that both questions are the same;
    `veto`: a rule refused it (a changed number, negation, question word), which no evidence may open."""

    accept: bool
    reason: str
    score: float
    veto: bool = False


class Guard:
    """Rejects near matches that differ in what matters; loads everything it needs at construction."""

    def __init__(
        self,
        classifier: PairClassifier | None = None,
        vectors: WordVectors | None = None,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        threshold: float | None = None,
    ) -> None:
        """`threshold` overrides the shipped operating point (P(same) needed to accept)."""
        if not -1.0 <= min_similarity <= 1.0:
            raise ValueError(f"min_similarity must lie in [-1, 1], got {min_similarity}")
        self.classifier = classifier or PairClassifier.load(WEIGHTS_FILE, FEATURE_NAMES)
        self.vectors = vectors or WordVectors.bundled()
        lexicon.load()
        self.min_similarity = min_similarity
        self.threshold = self.classifier.threshold if threshold is None else threshold
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")

    def check(self, query: str, candidate: str, similarity: float) -> GuardVerdict:
        """Verdict on serving the answer stored for `candidate` to `query`; `similarity` is their cosine."""
        return self.check_many([(query, candidate, similarity)])[0]

    def near_repeat(self, query: str, candidate: str) -> bool:
        """The same question but for typos, word forms, fillers and word order: no content word changed,
        no function word, no question word, no typed mismatch. Misspellings pull the cosine far down
        ("What is the captial of Austrlia?" scores 0.66), so this holds under any similarity floor."""
        comparison = compare(query, candidate)
        alignment = comparison.alignment
        return not (
            comparison.mismatches
            or alignment.synonyms  # a word of another sense can change the question: the classifier's call
            or alignment.left_content
            or alignment.right_content
            or alignment.function_changes
            or comparison.question_word_changed
        )

    def check_many(self, pairs: Iterable[tuple[str, str, float]]) -> list[GuardVerdict]:
        """Verdicts for many (query, candidate, similarity) triples; the classifier runs once for all."""
        triples = [_validated(*pair) for pair in pairs]
        comparisons = [compare(query, candidate) for query, candidate, _ in triples]
        verdicts: list[GuardVerdict | None] = [
            early_verdict(comparison, similarity, self.min_similarity)
            for comparison, (_, _, similarity) in zip(comparisons, triples, strict=True)
        ]
        undecided = [i for i, verdict in enumerate(verdicts) if verdict is None]
        if undecided:
            rows = np.stack([feature_vector(comparisons[i], triples[i][2], self.vectors) for i in undecided])
            for i, probability in zip(undecided, self.classifier.probabilities(rows), strict=True):
                verdicts[i] = self._classified(comparisons[i], float(probability))
        return [verdict for verdict in verdicts if verdict is not None]

    def _classified(self, comparison: Comparison, probability: float) -> GuardVerdict:
        if probability >= self.threshold:
            swapped = question_word_check(comparison.alignment)
            if swapped is not None:
                return GuardVerdict(False, f"{swapped.detail} (p={probability:.2f})", probability, veto=True)
            return GuardVerdict(True, f"same question (p={probability:.2f})", probability)
        alignment = comparison.alignment
        left = " ".join(t.surface for t in alignment.left_content) or "-"
        right = " ".join(t.surface for t in alignment.right_content) or "-"
        if alignment.left_content or alignment.right_content:
            reason = f"content changed: {left} vs {right} (p={probability:.2f})"
            return GuardVerdict(False, reason, probability)
        return GuardVerdict(False, f"low similarity (p={probability:.2f})", probability)


def early_verdict(comparison: Comparison, similarity: float, min_similarity: float) -> GuardVerdict | None:
    """The cheap stages: identical questions, too low a similarity, a typed mismatch; None leaves it open."""
    if not comparison.alignment.edits:
        return GuardVerdict(True, "same question once normalised", 1.0)
    if similarity < min_similarity:
        return GuardVerdict(False, f"low similarity: {similarity:.3f} < {min_similarity:.3f}", 0.0)
    if comparison.mismatches:
        return GuardVerdict(False, comparison.mismatches[0].detail, 0.0, veto=True)
    return None


def _validated(query: object, candidate: object, similarity: object) -> tuple[str, str, float]:
    if not isinstance(query, str) or not isinstance(candidate, str):
        raise TypeError("query and candidate must be strings")
    if isinstance(similarity, bool) or not isinstance(similarity, int | float):
        raise TypeError(f"similarity must be a number, got {type(similarity).__name__}")
    value = float(similarity)
    if not math.isfinite(value) or not -1.001 <= value <= 1.001:
        raise ValueError(f"similarity must be a cosine in [-1, 1], got {similarity}")
    return query, candidate, value
