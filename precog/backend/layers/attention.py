"""The one attention interface of the model: store this step's K/V in the paged cache, then attend.

The model calls `paged_attention` with explicit metadata (no global context object). Two kernels sit
behind it: "torch", our pure-torch reference for every row, and "kernels", which sends the decode rows
to `precog.kernels.paged_attention` (Triton on CUDA tensors, that package's torch reference elsewhere) and
prefill chunks to torch's fused scaled_dot_product_attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from precog.backend.layers.capture import HiddenCapture
from precog.backend.layers.kv_pages import LayerPages, plain_pages, store_pages
from precog.backend.layers.lowrank_attention import LowRankPlan, attend_lowrank
from precog.backend.layers.paged_attention import (
    AttentionPlan,
    paged_attention_reference,
    prefill_attention_sdpa,
)
from precog.kernels import paged_attention as kernel_decode_attention

AttentionBackend = Literal["torch", "kernels"]


class LayerAttention(Protocol):
    """An attention that replaces `paged_attention` for a whole step (precog.backend.sparse.SparseAttention):
    it stores the new K/V itself and needs to know the layer."""

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        kv_cache: LayerPages,
        meta: AttentionMetadata,
        scale: float,
    ) -> torch.Tensor: ...


@dataclass(frozen=True, slots=True)
class AttentionMetadata:
    """Where this step's N new tokens (of B sequences, concatenated) sit, in positions and in the cache.

    positions    [N] each token's position in its sequence
    slot_mapping [N] flat cache slot (block * block_size + offset) that receives each token's K/V
    plan         what each sequence's queries read (see plan_attention)
    logit_rows   [S] rows of the flat batch whose logits are wanted (last token of each sampled sequence)
    backend      which kernel attends (see the module docstring)
    capture      rows whose attention inputs a KV-compression press will need, or None
    layer_attention  replaces paged_attention in every layer (sparse attention), or None
    lowrank      decode rows of sequences with low-rank (OjaKV) coefficient pages, or None
    head_bias    per layer [b, KVH, 1, T]: -inf on decode slots a head does not hold (head-adaptive
                 compression), or None; decode rows then run on the torch reference
    """

    positions: torch.Tensor
    slot_mapping: torch.Tensor
    plan: AttentionPlan
    logit_rows: torch.Tensor
    backend: AttentionBackend = "torch"
    capture: HiddenCapture | None = None
    layer_attention: LayerAttention | None = None
    lowrank: LowRankPlan | None = None
    head_bias: list[torch.Tensor] | None = None


def write_kv(kv_cache: LayerPages, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """k, v [n, KVH, D] into the given flat slots of one layer's paged cache."""
    store_pages(kv_cache[0], slots, k)
    store_pages(kv_cache[1], slots, v)


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv_cache: LayerPages,
    meta: AttentionMetadata,
    scale: float,
    layer: int = 0,
) -> torch.Tensor:
    """q [N, H, D], new k/v [N, KVH, D] -> [N, H, D]: each token attends to its sequence up to itself."""
    write_kv(kv_cache, meta.slot_mapping, k, v)
    k_cache, v_cache = kv_cache
    head_bias = None if meta.head_bias is None else meta.head_bias[layer]
    if meta.backend == "torch" or head_bias is not None:
        out = paged_attention_reference(q, k_cache, v_cache, meta.plan, scale, head_bias)
    else:
        out = torch.empty_like(q)
        plan = meta.plan
        if len(plan.decode_rows):
            k_pages, v_pages = plain_pages(kv_cache)
            decoded = kernel_decode_attention(
                q[plan.decode_rows], k_pages, v_pages, plan.decode_tables, plan.decode_lens, scale
            )
            out[plan.decode_rows] = decoded.out
        prefill_attention_sdpa(q, k_cache, v_cache, plan, scale, out)
    if meta.lowrank is not None:
        attend_lowrank(q, out, plain_pages(kv_cache), meta.lowrank, layer, scale)
    return out
