"""Decode attention over a paged KV cache: one new query per sequence against its cached tokens.

GQA-aware: query head h reads KV head h // (num_q_heads // num_kv_heads). The Triton kernel runs one
program per (sequence, KV head), so each page is read once for all query heads of its group.
"""

from __future__ import annotations

import math

import torch

from precog.kernels.attention_math import AttentionOutput, masked_attention
from precog.kernels.block_table import check_block_table, gather_tokens
from precog.kernels.dispatch import Backend, use_triton


def check_paged_attention_inputs(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> None:
    """Raise ValueError on shapes, dtypes or block tables that do not describe one decode step."""
    if q.dim() != 3:
        raise ValueError(f"q must be [num_seqs, num_q_heads, head_dim], got {tuple(q.shape)}")
    if k_cache.dim() != 4 or v_cache.dim() != 4:
        raise ValueError(
            "k_cache and v_cache must be [num_blocks, block_size, num_kv_heads, dim], "
            f"got {tuple(k_cache.shape)} and {tuple(v_cache.shape)}"
        )
    if k_cache.shape[:3] != v_cache.shape[:3]:
        raise ValueError(
            f"k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} disagree on pages"
        )
    num_q_heads, num_kv_heads = q.shape[1], k_cache.shape[2]
    if num_kv_heads == 0 or num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads do not split evenly over {num_kv_heads} KV heads")
    if q.shape[2] != k_cache.shape[3]:
        raise ValueError(f"query head_dim {q.shape[2]} differs from key head_dim {k_cache.shape[3]}")
    if not (q.is_floating_point() and k_cache.is_floating_point() and v_cache.is_floating_point()):
        raise ValueError("q, k_cache and v_cache must be floating point")
    if len({q.device, k_cache.device, v_cache.device}) != 1:
        raise ValueError("q, k_cache and v_cache must be on the same device")
    check_block_table(block_tables, context_lens, q.shape[0], k_cache)


def paged_attention_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
) -> AttentionOutput:
    """Torch reference: gather every sequence's tokens, then masked softmax attention in float32.

    q [S, Hq, D]; k_cache [N, B, Hkv, D]; v_cache [N, B, Hkv, Dv]; block_tables [S, M]; context_lens [S].
    Returns out [S, Hq, Dv] (q's dtype) and lse [S, Hq]; scale defaults to 1/sqrt(D).
    """
    check_paged_attention_inputs(q, k_cache, v_cache, block_tables, context_lens)
    num_seqs, num_q_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    grouped = q.reshape(num_seqs, num_kv_heads, num_q_heads // num_kv_heads, head_dim)
    keys = gather_tokens(k_cache, block_tables, context_lens)
    values = gather_tokens(v_cache, block_tables, context_lens)
    out, lse = masked_attention(grouped, keys, values, context_lens, _scale(scale, head_dim))
    return AttentionOutput(
        out.reshape(num_seqs, num_q_heads, v_cache.shape[3]).to(q.dtype), lse.reshape(num_seqs, num_q_heads)
    )


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
    backend: Backend = "auto",
) -> AttentionOutput:
    """Paged decode attention; the Triton kernel on CUDA tensors, `paged_attention_ref` otherwise. Each
    call is a profiler range named for the one that ran (precog.kernels.paged_attention.triton / .torch)."""
    if not use_triton(backend, q, k_cache, v_cache):
        with torch.profiler.record_function("precog.kernels.paged_attention.torch"):
            return paged_attention_ref(q, k_cache, v_cache, block_tables, context_lens, scale)
    check_paged_attention_inputs(q, k_cache, v_cache, block_tables, context_lens)
    from precog.kernels.triton_kernels.paged_attention import launch_paged_attention

    with torch.profiler.record_function("precog.kernels.paged_attention.triton"):
        return launch_paged_attention(
            q, k_cache, v_cache, block_tables, context_lens, _scale(scale, q.shape[2])
        )


def _scale(scale: float | None, head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
