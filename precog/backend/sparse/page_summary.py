"""Quest-style page summaries: the element-wise min and max key of every KV page, per layer and KV head.

They live in the fast tier (1/block_size of the KV's size) so that a decode step can rank every page of
a sequence without touching the pages themselves. A summary is recomputed from its page whenever the
page is written; slots of a partly filled page that still hold an earlier owner's keys only make the
bound looser (a min/max over a superset), never wrong.

Shapes: kmin, kmax [num_layers, KVH, num_blocks, D] (head-major, so that one sequence's pages of one head
are contiguous rows for the scoring matmul); a layer's key cache [num_blocks, block_size, KVH, D].
"""

from __future__ import annotations

import torch


class PageSummaries:
    def __init__(self, num_layers: int, num_blocks: int, num_kv_heads: int, head_dim: int) -> None:
        shape = (num_layers, num_kv_heads, num_blocks, head_dim)
        self.kmin = torch.zeros(shape)
        self.kmax = torch.zeros(shape)

    def refresh(self, layer: int, k_cache: torch.Tensor, blocks: torch.Tensor) -> None:
        """Recompute the summaries of `blocks` [n] (long) from layer's key cache."""
        if not len(blocks):
            return
        pages = k_cache.index_select(0, blocks)  # [n, block_size, KVH, D]
        self.kmin[layer].index_copy_(1, blocks, pages.amin(dim=1).transpose(0, 1).to(self.kmin.dtype))
        self.kmax[layer].index_copy_(1, blocks, pages.amax(dim=1).transpose(0, 1).to(self.kmax.dtype))

    def gather(self, layer: int, tables: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block tables [b, M] -> the pages' (kmin, kmax), each [KVH, b, M, D]."""
        flat = tables.flatten()
        shape = (self.kmin.shape[1], *tables.shape, self.kmin.shape[3])
        return (
            self.kmin[layer].index_select(1, flat).view(shape),
            self.kmax[layer].index_select(1, flat).view(shape),
        )
