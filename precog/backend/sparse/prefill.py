"""Layer-segmented prefill: a long prompt runs layer by layer, all its chunks through layer l before any
chunk enters layer l + 1, so only one layer's KV of the whole prompt must be resident at a time.

The layer's KV is built in a staging buffer (the fast tier's share for prefill) of ceil(T / block_size)
pages; when the layer is done, its pages are saved to the large tier in one batched copy and the buffer
is reused for the next layer. Between layers only the prompt's hidden states [T, hidden] are kept.
Ordinary chunked prefill instead needs every layer's KV of the earlier chunks while a chunk runs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from precog.backend.layers.attention import AttentionMetadata
from precog.backend.layers.paged_attention import plan_attention
from precog.backend.model.llama import LlamaModel


class SegmentedPrefill(NamedTuple):
    """logits [vocab] of the last prompt token; staged_pages: the most pages resident at once."""

    logits: torch.Tensor
    staged_pages: int


@torch.inference_mode()
def layer_segmented_prefill(
    model: LlamaModel,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    block_table: list[int],
    token_ids: list[int],
    chunk_size: int,
) -> SegmentedPrefill:
    """Prefill token_ids into the large tier's `layers` (per layer [blocks, B, KVH, D] K and V) at
    block_table; chunks of chunk_size tokens. Returns what `model` on the whole prompt would."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_tokens = len(token_ids)
    if num_tokens == 0:
        raise ValueError("cannot prefill an empty prompt")
    k_large = layers[0][0]
    block_size = k_large.shape[1]
    num_pages = -(-num_tokens // block_size)
    if len(block_table) < num_pages:
        raise ValueError(f"{num_tokens} tokens need {num_pages} blocks, the table has {len(block_table)}")
    staging = (
        torch.zeros(num_pages, *k_large.shape[1:], dtype=k_large.dtype),
        torch.zeros(num_pages, *layers[0][1].shape[1:], dtype=layers[0][1].dtype),
    )
    local_table = list(range(num_pages))
    chunks = []
    for start in range(0, num_tokens, chunk_size):
        end = min(start + chunk_size, num_tokens)
        positions = torch.arange(start, end)
        meta = AttentionMetadata(
            positions=positions,
            slot_mapping=positions,  # the staging pages are the sequence's pages in order
            plan=plan_attention([local_table], [end - start], [end], block_size),
            logit_rows=torch.empty(0, dtype=torch.long),
        )
        chunks.append((start, end, model.rope.at(positions), meta))
    targets = torch.tensor(block_table[:num_pages], dtype=torch.long)
    x = model.embed_tokens(torch.tensor(token_ids))
    for layer, (k_cache, v_cache) in zip(model.layers, layers, strict=True):
        out = torch.empty_like(x)
        for start, end, rope, meta in chunks:
            out[start:end] = layer(x[start:end], rope, staging, meta)
        x = out
        k_cache.index_copy_(0, targets, staging[0])
        v_cache.index_copy_(0, targets, staging[1])
    return SegmentedPrefill(model.lm_head(model.norm(x[-1:]))[0], num_pages)
