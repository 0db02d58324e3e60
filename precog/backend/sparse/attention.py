"""Sparse decode attention over a two-tier KV (SparseServe): the engine's per-layer attention hook.

Every layer call first stores the step's new K/V in the large tier (the engine's paged cache), refreshes
the written pages' summaries and their fast-tier copies. Prefill chunks then attend densely over the
large tier; each decode query ranks its sequence's pages by their summaries, keeps the top pages (plus
sink and most recent ones) per KV head, has the fast tier make them resident (one batched gather for
all misses), and attends over them alone through the paged decode kernel, with one reduced block table
per (sequence, KV head): the fast tier's [P, KVH, B, D] pages viewed as [P * KVH, B, 1, D] one-head pages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from precog.backend.layers.attention import AttentionMetadata, write_kv
from precog.backend.layers.kv_pages import LayerPages, plain_pages
from precog.backend.layers.paged_attention import prefill_attention_reference
from precog.backend.sparse.page_summary import PageSummaries
from precog.backend.sparse.selection import page_upper_bounds, select_pages
from precog.backend.sparse.tiers import FastTier, TierStats
from precog.kernels import paged_attention as paged_decode


@dataclass(slots=True)
class SparseSettings:
    """budget_pages: pages each decode query attends to per KV head (sink and recent pages included);
    sink_pages: leading pages always kept; fast_tier_pages: the fast tier's capacity in (layer, block)
    pages; working_set_batching: whether the scheduler keeps running working sets under that capacity."""

    budget_pages: int
    sink_pages: int = 1
    fast_tier_pages: int = 4096
    working_set_batching: bool = True

    def __post_init__(self) -> None:
        if self.sink_pages < 0:
            raise ValueError(f"sink_pages must be >= 0, got {self.sink_pages}")
        if self.budget_pages < self.sink_pages + 1:
            raise ValueError(
                f"budget_pages ({self.budget_pages}) must cover the {self.sink_pages} sink pages and the "
                "most recent page"
            )
        if self.fast_tier_pages < 1:
            raise ValueError(f"fast_tier_pages must be >= 1, got {self.fast_tier_pages}")


@dataclass(slots=True)
class SelectionStats:
    """Decode steps seen, and per (sequence, layer) selection the pages per head and distinct pages."""

    decode_steps: int = 0
    selections: int = 0
    head_pages: int = 0
    distinct_pages: int = 0


class SparseAttention:
    """Page summaries, the fast tier and the selection rule for one engine; `attend` is its layer hook."""

    def __init__(
        self,
        settings: SparseSettings,
        num_layers: int,
        num_blocks: int,
        num_kv_heads: int,
        block_size: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.settings = settings
        self.num_layers = num_layers
        self.num_kv_heads = num_kv_heads
        self.block_size = block_size
        self.summaries = PageSummaries(num_layers, num_blocks, num_kv_heads, head_dim)
        self._tier_shape = (num_layers, num_blocks, num_kv_heads, block_size, head_dim)
        self.tier = FastTier(settings.fast_tier_pages, *self._tier_shape, dtype=dtype)
        self.selection = SelectionStats()

    @classmethod
    def over(
        cls, settings: SparseSettings, layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> SparseAttention:
        """Sparse attention over a paged cache's per-layer [blocks, block_size, KVH, D] pages as they are
        (a fresh fast tier; summaries of every page, so prefix-cached blocks stay usable)."""
        num_blocks, block_size, num_kv_heads, head_dim = layers[0][0].shape
        sparse = cls(
            settings, len(layers), num_blocks, num_kv_heads, block_size, head_dim, layers[0][0].dtype
        )
        sparse.rewritten(list(range(num_blocks)), layers)
        return sparse

    @property
    def tier_stats(self) -> TierStats:
        return self.tier.stats

    def pages_per_head_page(self) -> float:
        """Measured distinct pages a sequence's layer needs per page each head selects (1..KVH); KVH,
        the most it can be, until a decode step has run."""
        s = self.selection
        return s.distinct_pages / s.head_pages if s.head_pages else float(self.num_kv_heads)

    def rewritten(self, block_table: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The large tier's content of these blocks changed outside `attend` (imported or compacted KV)."""
        blocks = torch.tensor(block_table, dtype=torch.long)
        self.tier.invalidate(blocks)
        for layer, (k_cache, _) in enumerate(layers):
            self.summaries.refresh(layer, k_cache, blocks)

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        kv_cache: LayerPages,
        meta: AttentionMetadata,
        scale: float,
    ) -> torch.Tensor:
        """q [N, H, D], new k/v [N, KVH, D] -> [N, H, D]; decode rows sparse, prefill chunks dense."""
        pages = plain_pages(kv_cache)
        write_kv(pages, meta.slot_mapping, k, v)
        self.summaries.refresh(layer, pages[0], torch.unique(meta.slot_mapping // self.block_size))
        self.tier.write_through(layer, meta.slot_mapping, k, v)
        out = torch.empty_like(q)
        plan = meta.plan
        if len(plan.decode_rows):
            out[plan.decode_rows] = self.decode(
                layer, q[plan.decode_rows], pages, plan.decode_tables, plan.decode_lens, scale
            )
        prefill_attention_reference(q, pages[0], pages[1], plan, scale, out)
        return out

    def decode(
        self,
        layer: int,
        q: torch.Tensor,
        kv_cache: tuple[torch.Tensor, torch.Tensor],
        tables: torch.Tensor,
        lens: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """q [b, H, D] of b sequences with block tables [b, M] and lengths [b] -> [b, H, D]."""
        b, h, d = q.shape
        kvh, bs = self.num_kv_heads, self.block_size
        num_pages = (lens + bs - 1) // bs
        tables = tables[:, : int(num_pages.max())]
        m = tables.shape[1]
        grouped = q.view(b, kvh, h // kvh, d)
        kmin, kmax = self.summaries.gather(layer, tables)
        chosen = select_pages(
            page_upper_bounds(grouped.float(), kmin, kmax),
            num_pages,
            self.settings.budget_pages,
            self.settings.sink_pages,
        )
        taken = chosen.pages < m
        block_ids = tables.gather(1, chosen.pages.clamp(max=m - 1).view(b, -1)).view(chosen.pages.shape)
        blocks, where = torch.unique(block_ids[taken], return_inverse=True)
        k_pages, v_pages, index = self.tier.fetch(layer, blocks, kv_cache)
        slot = torch.zeros_like(block_ids)
        slot[taken] = index[where]
        page_index = slot * kvh + torch.arange(kvh)[None, :, None]  # one-head page of each (slot, head)
        last_fill = lens - (num_pages - 1) * bs
        selected_lens = (chosen.counts - 1) * bs + last_fill[:, None]
        self._count(layer, chosen.counts, block_ids, taken)
        out = paged_decode(
            grouped.reshape(b * kvh, h // kvh, d),
            k_pages.view(-1, bs, 1, d),
            v_pages.view(-1, bs, 1, d),
            page_index.view(b * kvh, -1),
            selected_lens.view(-1),
            scale,
        ).out
        return out.view(b, h, d)

    def _count(self, layer: int, counts: torch.Tensor, block_ids: torch.Tensor, taken: torch.Tensor) -> None:
        s = self.selection
        if layer == 0:
            s.decode_steps += 1
        s.selections += len(counts)
        s.head_pages += int(counts.sum()) // self.num_kv_heads
        flat = block_ids.masked_fill(~taken, -1).flatten(1).sort(dim=1).values
        distinct = 1 + (flat[:, 1:] != flat[:, :-1]).sum(dim=1) - (flat[:, 0] < 0).long()
        s.distinct_pages += int(distinct.sum())


def budget_pages_for(budget_tokens: int, block_size: int) -> int:
    """A token budget as whole pages (at least 2: one sink page and the recent one)."""
    return max(2, math.ceil(budget_tokens / block_size))
