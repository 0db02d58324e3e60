"""Recall and false-hit rate of accept decisions on labelled pairs, overall and per category.

false-hit rate = share of must-not-hit pairs that are served; recall = share of should-hit pairs served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from precog.gateway.guard.pairs import LabelledPair


@dataclass(frozen=True, slots=True)
class Rates:
    recall: float
    false_hits: float
    should_hit: int
    traps: int
    # Served share per category: recall for the should-hit ones, the false-hit rate for traps.
    by_category: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "recall": self.recall,
            "false_hits": self.false_hits,
            "should_hit": self.should_hit,
            "traps": self.traps,
            "by_category": self.by_category,
        }


def rates(pairs: Sequence[LabelledPair], served: Sequence[bool]) -> Rates:
    if len(pairs) != len(served):
        raise ValueError(f"{len(pairs)} pairs but {len(served)} decisions")
    decided = list(zip(pairs, served, strict=True))
    positives = [s for p, s in decided if p.same_answer]
    negatives = [s for p, s in decided if not p.same_answer]
    categories = sorted({p.category for p in pairs})
    by_category = {c: float(np.mean([s for p, s in decided if p.category == c])) for c in categories}
    return Rates(
        recall=float(np.mean(positives)) if positives else float("nan"),
        false_hits=float(np.mean(negatives)) if negatives else float("nan"),
        should_hit=len(positives),
        traps=len(negatives),
        by_category=by_category,
    )


def best_threshold(pairs: Sequence[LabelledPair], scores: np.ndarray, max_false_hits: float) -> float:
    """The lowest score threshold whose false-hit rate on `pairs` stays within `max_false_hits`."""
    labels = np.array([p.same_answer for p in pairs])
    for threshold in np.unique(scores):
        served = scores >= threshold
        if served[~labels].mean() <= max_false_hits:
            return float(threshold)
    return 1.0
