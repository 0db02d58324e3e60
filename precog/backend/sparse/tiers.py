"""The fast tier: a bounded page buffer that caches (layer, block) pages of the large tier's full KV.

The large tier is the engine's paged KV cache (host memory, every layer and token); the fast tier
(GPU memory in SparseServe, a separate bounded tensor here) holds at most `capacity` pages, each one
layer's keys and values of one block laid out [KVH, block_size, D] so that a page viewed per KV head is
itself a one-head page for the paged decode kernel. A step's selected pages that are missing are loaded
in one batched gather (index_select) per layer; the victims are the least recently used pages outside
the current selection. New tokens are written to the large tier and, where their page is resident, into
its fast-tier copy in the same batched write, so a cached page is never stale.

When one layer's selection alone exceeds the capacity the step cannot be served from the tier: its pages
are gathered into a transient buffer instead (counted as moved, and as an overflow).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_PINNED = 1 << 62


@dataclass(slots=True)
class TierStats:
    """Counts since the tier was made: page lookups, hits, pages loaded, batched gathers, overflows."""

    lookups: int = 0
    hits: int = 0
    pages_loaded: int = 0
    gathers: int = 0
    overflows: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class FastTier:
    def __init__(
        self,
        capacity: int,
        num_layers: int,
        num_blocks: int,
        num_kv_heads: int,
        block_size: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"the fast tier needs at least one page, got capacity {capacity}")
        self.capacity = capacity
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.k = torch.zeros(capacity, num_kv_heads, block_size, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.owner = torch.full((capacity,), -1, dtype=torch.long)  # layer * num_blocks + block, or -1
        self.slot_of = torch.full((num_layers * num_blocks,), -1, dtype=torch.long)
        self.last_used = torch.zeros(capacity, dtype=torch.long)
        self.clock = 0
        self.stats = TierStats()

    @property
    def resident(self) -> int:
        return int((self.owner >= 0).sum())

    def fetch(
        self, layer: int, blocks: torch.Tensor, large: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Make layer's pages `blocks` [n] (distinct) resident; return (k_pages, v_pages, index [n]):
        page i is k_pages[index[i]], each page [KVH, block_size, D]."""
        n = len(blocks)
        keys = layer * self.num_blocks + blocks
        slots = self.slot_of[keys]
        hit = slots >= 0
        self.clock += 1
        self.stats.lookups += n
        if n > self.capacity:
            self.stats.overflows += 1
            self.stats.pages_loaded += n
            self.stats.gathers += 1
            k, v = _gather(large[0], blocks).contiguous(), _gather(large[1], blocks).contiguous()
            return k, v, torch.arange(n)
        self.stats.hits += int(hit.sum())
        miss = ~hit
        if bool(miss.any()):
            slots = slots.clone()
            slots[miss] = self._load(keys[miss], blocks[miss], slots[hit], large)
        self.last_used[slots] = self.clock
        return self.k, self.v, slots

    def _load(
        self,
        keys: torch.Tensor,
        blocks: torch.Tensor,
        pinned: torch.Tensor,
        large: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        priority = self.last_used.masked_fill(self.owner < 0, -1)
        priority[pinned] = _PINNED
        victims = priority.topk(len(keys), largest=False).indices
        evicted = self.owner[victims]
        self.slot_of[evicted[evicted >= 0]] = -1
        self.k[victims] = _gather(large[0], blocks)
        self.v[victims] = _gather(large[1], blocks)
        self.owner[victims] = keys
        self.slot_of[keys] = victims
        self.stats.pages_loaded += len(keys)
        self.stats.gathers += 1
        return victims

    def write_through(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Copy new tokens k, v [n, KVH, D] at flat large-tier slots [n] into their resident pages."""
        page = self.slot_of[layer * self.num_blocks + slots // self.block_size]
        resident = page >= 0
        if not bool(resident.any()):
            return
        where, offset = page[resident], slots[resident] % self.block_size
        self.k[where, :, offset] = k[resident].to(self.k.dtype)
        self.v[where, :, offset] = v[resident].to(self.v.dtype)

    def invalidate(self, blocks: torch.Tensor) -> None:
        """Forget every layer's copy of `blocks` (their large-tier content was rewritten)."""
        layers = len(self.slot_of) // self.num_blocks
        keys = (torch.arange(layers)[:, None] * self.num_blocks + blocks[None, :]).flatten()
        slots = self.slot_of[keys]
        resident = slots >= 0
        self.owner[slots[resident]] = -1
        self.slot_of[keys[resident]] = -1


def _gather(cache: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """Pages [n, block_size, KVH, D] of the large tier as fast-tier pages [n, KVH, block_size, D]."""
    return cache.index_select(0, blocks).transpose(1, 2)
