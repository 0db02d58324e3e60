"""Decode attention for sequences whose middle tokens live as low-rank coefficients (OjaKV).

Coefficient pages are carved out of the same paged cache as full-rank KV: a block that holds
block_size tokens × KVH × D floats holds block_size·D // r tokens of rank-r coefficients, viewed in
place as [num_blocks, tokens_per_page, KVH, r]. So a sequence's low-rank store takes whole blocks from
the one block manager, and what it saves shows up as blocks returned to the pool.

Such a sequence attends in two parts that merge exactly by log-sum-exp: paged attention over its
full-rank blocks (sinks and the recent window) and `precog.kernels.lowrank_attention` over its coefficient
pages in its own bases (Triton on CUDA, the torch reference on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precog.kernels import lowrank_attention, merge_attention
from precog.kernels import paged_attention as kernel_decode_attention


def tokens_per_page(block_size: int, head_dim: int, rank: int) -> int:
    """Tokens of rank-r coefficients one full-rank block holds."""
    return block_size * head_dim // rank


def coefficient_pages(cache: torch.Tensor, rank: int) -> torch.Tensor:
    """One layer's key or value cache [N, B, KVH, D] viewed (no copy) as pages [N, B·D // r, KVH, r]."""
    num_blocks, block_size, kv_heads, head_dim = cache.shape
    per_page = tokens_per_page(block_size, head_dim, rank)
    flat = cache.view(num_blocks, -1)[:, : per_page * kv_heads * rank]
    return flat.view(num_blocks, per_page, kv_heads, rank)


@dataclass(frozen=True, slots=True)
class LowRankGroup:
    """Decode rows of one step whose sequences store coefficients of one rank.

    rows          [S] rows of the flat batch
    tables, lens  [S, M], [S] the full-rank blocks and how many tokens they hold
    coeff_tables  [S, M'] coefficient pages; coeff_lens [S] coefficient tokens
    basis_k/v     per layer [S, KVH, D, r]
    """

    rank: int
    rows: torch.Tensor
    tables: torch.Tensor
    lens: torch.Tensor
    coeff_tables: torch.Tensor
    coeff_lens: torch.Tensor
    basis_k: list[torch.Tensor]
    basis_v: list[torch.Tensor]


@dataclass(frozen=True, slots=True)
class LowRankPlan:
    groups: list[LowRankGroup]


def attend_lowrank(
    q: torch.Tensor,
    out: torch.Tensor,
    kv_cache: tuple[torch.Tensor, torch.Tensor],
    plan: LowRankPlan,
    layer: int,
    scale: float,
) -> None:
    """Overwrite the low-rank sequences' rows of out [N, H, D] with attention over both of their parts."""
    k_cache, v_cache = kv_cache
    for group in plan.groups:
        queries = q[group.rows]
        full = kernel_decode_attention(queries, k_cache, v_cache, group.tables, group.lens, scale)
        low = lowrank_attention(
            queries,
            coefficient_pages(k_cache, group.rank),
            coefficient_pages(v_cache, group.rank),
            group.basis_k[layer],
            group.basis_v[layer],
            group.coeff_tables,
            group.coeff_lens,
            scale,
        )
        out[group.rows] = merge_attention(full, low).out
