"""Decode attention over low-rank KV pages (OjaKV): tokens stored as coefficients in a per-head basis.

Token t of KV head h holds key coefficients c_t ∈ R^{r_k} and value coefficients e_t ∈ R^{r_v}, with
k_t ≈ U_k c_t and v_t ≈ U_v e_t for the sequence's bases U_k [D, r_k], U_v [D, r_v]. Attention never
rebuilds K or V: q·k_t = (U_kᵀ q)·c_t, and Σ p_t v_t = U_v Σ p_t e_t, so the query is projected into
the key basis, paged attention runs over the coefficient pages in rank space, and only the result is
lifted back. The output carries its log-sum-exp so it merges with attention over full-rank pages.
"""

from __future__ import annotations

import math

import torch

from precog.kernels.attention_math import AttentionOutput, masked_attention
from precog.kernels.block_table import check_block_table, gather_tokens
from precog.kernels.dispatch import Backend
from precog.kernels.paged_attention import paged_attention


def check_lowrank_inputs(
    q: torch.Tensor,
    coeff_k: torch.Tensor,
    coeff_v: torch.Tensor,
    basis_k: torch.Tensor,
    basis_v: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> None:
    """Raise ValueError unless the pages, bases and block tables describe one low-rank decode step."""
    if q.dim() != 3 or coeff_k.dim() != 4 or coeff_v.dim() != 4:
        raise ValueError(
            "q must be [num_seqs, num_q_heads, head_dim] and coefficient pages [num_blocks, block_size, "
            f"num_kv_heads, rank], got {tuple(q.shape)}, {tuple(coeff_k.shape)}, {tuple(coeff_v.shape)}"
        )
    if coeff_k.shape[:3] != coeff_v.shape[:3]:
        raise ValueError(
            f"coeff_k {tuple(coeff_k.shape)} and coeff_v {tuple(coeff_v.shape)} disagree on pages"
        )
    num_seqs, num_q_heads, head_dim = q.shape
    num_kv_heads = coeff_k.shape[2]
    if num_kv_heads == 0 or num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads do not split evenly over {num_kv_heads} KV heads")
    if not (q.is_floating_point() and coeff_k.is_floating_point() and coeff_v.is_floating_point()):
        raise ValueError("q, coeff_k and coeff_v must be floating point")
    for name, basis, pages in (("basis_k", basis_k, coeff_k), ("basis_v", basis_v, coeff_v)):
        expected = (num_seqs, num_kv_heads, head_dim, pages.shape[3])
        if tuple(basis.shape) != expected:
            raise ValueError(
                f"{name} must be [num_seqs, num_kv_heads, head_dim, rank] = {expected}, "
                f"not {tuple(basis.shape)}"
            )
        if not basis.is_floating_point() or basis.device != q.device:
            raise ValueError(f"{name} must be floating point and on the query's device")
    check_block_table(block_tables, context_lens, num_seqs, coeff_k)


def lowrank_attention_ref(
    q: torch.Tensor,
    coeff_k: torch.Tensor,
    coeff_v: torch.Tensor,
    basis_k: torch.Tensor,
    basis_v: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
) -> AttentionOutput:
    """Torch reference by definition: rebuild K = C U_kᵀ and V = E U_vᵀ, then ordinary attention.

    q [S, Hq, D]; coeff_k [N, B, Hkv, r_k]; coeff_v [N, B, Hkv, r_v]; basis_k [S, Hkv, D, r_k];
    basis_v [S, Hkv, D, r_v]; block_tables [S, M]; context_lens [S]. Returns out [S, Hq, D] and lse [S, Hq].
    """
    check_lowrank_inputs(q, coeff_k, coeff_v, basis_k, basis_v, block_tables, context_lens)
    num_seqs, num_q_heads, head_dim = q.shape
    num_kv_heads = coeff_k.shape[2]
    keys = torch.einsum(
        "sthr,shdr->sthd", gather_tokens(coeff_k, block_tables, context_lens).float(), basis_k.float()
    )
    values = torch.einsum(
        "sthr,shdr->sthd", gather_tokens(coeff_v, block_tables, context_lens).float(), basis_v.float()
    )
    grouped = q.reshape(num_seqs, num_kv_heads, num_q_heads // num_kv_heads, head_dim)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    out, lse = masked_attention(grouped, keys, values, context_lens, scale)
    return AttentionOutput(
        out.reshape(num_seqs, num_q_heads, head_dim).to(q.dtype), lse.reshape(num_seqs, num_q_heads)
    )


def lowrank_attention(
    q: torch.Tensor,
    coeff_k: torch.Tensor,
    coeff_v: torch.Tensor,
    basis_k: torch.Tensor,
    basis_v: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float | None = None,
    backend: Backend = "auto",
) -> AttentionOutput:
    """Attention in rank space: q' = U_kᵀ q, paged attention over the coefficient pages, out = U_v ō.

    The paged step is the Triton kernel on CUDA tensors and the torch reference otherwise; neither
    rebuilds the full keys or values.
    """
    check_lowrank_inputs(q, coeff_k, coeff_v, basis_k, basis_v, block_tables, context_lens)
    num_seqs, num_q_heads, head_dim = q.shape
    num_kv_heads = coeff_k.shape[2]
    grouped = q.float().reshape(num_seqs, num_kv_heads, num_q_heads // num_kv_heads, head_dim)
    projected = torch.einsum("shgd,shdr->shgr", grouped, basis_k.float()).reshape(num_seqs, num_q_heads, -1)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    in_rank = paged_attention(projected, coeff_k, coeff_v, block_tables, context_lens, scale, backend)
    rank_out = in_rank.out.reshape(num_seqs, num_kv_heads, num_q_heads // num_kv_heads, -1)
    out = torch.einsum("shgr,shdr->shgd", rank_out, basis_v.float()).reshape(num_seqs, num_q_heads, head_dim)
    return AttentionOutput(out.to(q.dtype), in_rank.lse)
