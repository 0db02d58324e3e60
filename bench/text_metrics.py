"""Output-fidelity measures the benchmarks share."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def rouge_l(reference: Sequence[Hashable], candidate: Sequence[Hashable]) -> float:
    """ROUGE-L F1 (longest common subsequence) over words or token ids."""
    if not reference or not candidate:
        return float(len(reference) == len(candidate))
    previous = [0] * (len(candidate) + 1)
    for a in reference:
        current = [0]
        for j, b in enumerate(candidate):
            current.append(previous[j] + 1 if a == b else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)
