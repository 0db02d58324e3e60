"""The one attention interface of the model: store this step's K/V in the paged cache, then attend.

The model calls `paged_attention` with explicit metadata (no global context object). The kernel behind
it is the pure-torch reference, which runs on any device; a Triton kernel taking the same plan (see
`backend.layers.paged_attention` for the shapes) can replace it on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.layers.paged_attention import AttentionPlan, paged_attention_reference


@dataclass(frozen=True, slots=True)
class AttentionMetadata:
    """Where this step's N new tokens (of B sequences, concatenated) sit, in positions and in the cache.

    positions    [N] each token's position in its sequence
    slot_mapping [N] flat cache slot (block * block_size + offset) that receives each token's K/V
    plan         what each sequence's queries read (see plan_attention)
    logit_rows   [S] rows of the flat batch whose logits are wanted (last token of each sampled sequence)
    """

    positions: torch.Tensor
    slot_mapping: torch.Tensor
    plan: AttentionPlan
    logit_rows: torch.Tensor


def write_kv(
    kv_cache: tuple[torch.Tensor, torch.Tensor], slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> None:
    """k, v [n, KVH, D] into the given flat slots of one layer's paged cache."""
    k_cache, v_cache = kv_cache
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, k)
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, v)


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv_cache: tuple[torch.Tensor, torch.Tensor],
    meta: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """q [N, H, D], new k/v [N, KVH, D] -> [N, H, D]: each token attends to its sequence up to itself."""
    write_kv(kv_cache, meta.slot_mapping, k, v)
    return paged_attention_reference(q, kv_cache[0], kv_cache[1], meta.plan, scale)
