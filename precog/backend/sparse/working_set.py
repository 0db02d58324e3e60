"""Working-set-aware batching: keep the running sequences' per-step page sets within the fast tier.

A decode step of one sequence touches, in every layer, the distinct pages its KV heads select: at most
its page count, and about budget_pages x (distinct pages per head page, measured as the engine runs).
Summed over layers and running sequences this is the step's working set; while it fits the fast tier,
the pages a sequence needs at step t+1 are mostly those it used at step t and stay resident; once it
exceeds the tier, LRU evicts exactly the pages the next step needs and every lookup misses (thrashing).
The scheduler asks `fits` before admitting a request and preempts the newest while the sum is over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from precog.backend.engine.sequence import Sequence
from precog.backend.sparse.attention import SparseAttention


class WorkingSetBudget:
    def __init__(self, sparse: SparseAttention) -> None:
        self.sparse = sparse

    @property
    def capacity(self) -> int:
        return self.sparse.tier.capacity

    def estimate(self, seq: Sequence) -> int:
        """Fast-tier pages one decode step of seq touches, over all layers (its next token included)."""
        sparse = self.sparse
        pages = -(-(seq.num_cached_tokens + seq.num_uncomputed + 1) // sparse.block_size)
        per_head = min(pages, sparse.settings.budget_pages)
        per_layer = min(pages, math.ceil(per_head * sparse.pages_per_head_page()))
        return sparse.num_layers * per_layer

    def total(self, seqs: Iterable[Sequence]) -> int:
        return sum(self.estimate(seq) for seq in seqs)

    def fits(self, seqs: Iterable[Sequence]) -> bool:
        return self.total(seqs) <= self.capacity
