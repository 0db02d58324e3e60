"""Sparse attention over a two-tier KV cache (SparseServe, arXiv 2509.24626).

Decode queries attend only to the pages whose Quest upper bound ranks highest (plus sink and recent
pages); the full KV stays in the large tier and a bounded fast tier caches pages, loading a step's
misses in one gather; the scheduler keeps running working sets within the fast tier; long prompts can
be prefilled layer by layer. Engine use: EngineConfig(attention="sparse", sparse_budget_tokens=...).
"""

from precog.backend.sparse.attention import SelectionStats, SparseAttention, SparseSettings, budget_pages_for
from precog.backend.sparse.page_summary import PageSummaries
from precog.backend.sparse.prefill import SegmentedPrefill, layer_segmented_prefill
from precog.backend.sparse.selection import PageSelection, page_upper_bounds, select_pages
from precog.backend.sparse.tiers import FastTier, TierStats
from precog.backend.sparse.working_set import WorkingSetBudget

__all__ = [
    "FastTier",
    "PageSelection",
    "PageSummaries",
    "SegmentedPrefill",
    "SelectionStats",
    "SparseAttention",
    "SparseSettings",
    "TierStats",
    "WorkingSetBudget",
    "budget_pages_for",
    "layer_segmented_prefill",
    "page_upper_bounds",
    "select_pages",
]
