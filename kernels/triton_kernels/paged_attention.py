"""Triton paged decode attention: one program per (sequence, KV head), online softmax over pages."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.attention_math import AttentionOutput
from kernels.triton_kernels.tiles import dot_extent


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, lse_ptr, scale,
    stride_qs, stride_qh, stride_qd,
    stride_kn, stride_kb, stride_kh, stride_kd,
    stride_vn, stride_vb, stride_vh, stride_vd,
    stride_ts, stride_tm,
    stride_os, stride_oh, stride_od,
    stride_ls, stride_lh,
    GROUP: tl.constexpr, GROUP_TILE: tl.constexpr,
    DIM_K: tl.constexpr, DIM_K_TILE: tl.constexpr,
    DIM_V: tl.constexpr, DIM_V_TILE: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_TILE: tl.constexpr,
):  # fmt: skip
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    rows = tl.arange(0, GROUP_TILE)
    dk = tl.arange(0, DIM_K_TILE)
    dv = tl.arange(0, DIM_V_TILE)
    slots = tl.arange(0, BLOCK_TILE)
    row_ok = rows < GROUP
    heads = kv_head * GROUP + rows

    q = tl.load(
        q_ptr + seq * stride_qs + heads[:, None] * stride_qh + dk[None, :] * stride_qd,
        mask=row_ok[:, None] & (dk[None, :] < DIM_K),
        other=0.0,
    ).to(tl.float32)
    length = tl.load(lens_ptr + seq)

    running_max = tl.full([GROUP_TILE], float("-inf"), tl.float32)
    denominator = tl.zeros([GROUP_TILE], tl.float32)
    acc = tl.zeros([GROUP_TILE, DIM_V_TILE], tl.float32)
    for page_index in range(0, tl.cdiv(length, BLOCK_SIZE)):
        page = tl.load(tables_ptr + seq * stride_ts + page_index * stride_tm).to(tl.int64)
        slot_ok = (slots < BLOCK_SIZE) & (page_index * BLOCK_SIZE + slots < length)
        k = tl.load(
            k_ptr
            + page * stride_kn
            + slots[:, None] * stride_kb
            + kv_head * stride_kh
            + dk[None, :] * stride_kd,
            mask=slot_ok[:, None] & (dk[None, :] < DIM_K),
            other=0.0,
        ).to(tl.float32)
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        scores = tl.where(slot_ok[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=1))
        rescale = tl.exp(running_max - new_max)
        probs = tl.exp(scores - new_max[:, None])
        denominator = denominator * rescale + tl.sum(probs, axis=1)
        v = tl.load(
            v_ptr
            + page * stride_vn
            + slots[:, None] * stride_vb
            + kv_head * stride_vh
            + dv[None, :] * stride_vd,
            mask=slot_ok[:, None] & (dv[None, :] < DIM_V),
            other=0.0,
        ).to(tl.float32)
        acc = acc * rescale[:, None] + tl.dot(probs, v, input_precision="ieee")
        running_max = new_max

    has_keys = denominator > 0
    out = acc / tl.where(has_keys, denominator, 1.0)[:, None]
    lse = tl.where(has_keys, running_max + tl.log(tl.where(has_keys, denominator, 1.0)), float("-inf"))
    tl.store(
        out_ptr + seq * stride_os + heads[:, None] * stride_oh + dv[None, :] * stride_od,
        out.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & (dv[None, :] < DIM_V),
    )
    tl.store(lse_ptr + seq * stride_ls + heads * stride_lh, lse, mask=row_ok)


def launch_paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> AttentionOutput:
    """Run the kernel on inputs already checked by kernels.paged_attention."""
    num_seqs, num_q_heads, dim_k = q.shape
    _, block_size, num_kv_heads, dim_v = v_cache.shape
    group = num_q_heads // num_kv_heads
    out = torch.empty((num_seqs, num_q_heads, dim_v), dtype=q.dtype, device=q.device)
    lse = torch.empty((num_seqs, num_q_heads), dtype=torch.float32, device=q.device)
    if num_seqs == 0:
        return AttentionOutput(out, lse)
    _paged_decode_kernel[(num_seqs, num_kv_heads)](
        q, k_cache, v_cache, block_tables, context_lens, out, lse, scale,
        *q.stride(), *k_cache.stride(), *v_cache.stride(), *block_tables.stride(),
        *out.stride(), *lse.stride(),
        GROUP=group, GROUP_TILE=dot_extent(group),
        DIM_K=dim_k, DIM_K_TILE=dot_extent(dim_k),
        DIM_V=dim_v, DIM_V_TILE=dot_extent(dim_v),
        BLOCK_SIZE=block_size, BLOCK_TILE=dot_extent(block_size),
    )  # fmt: skip
    return AttentionOutput(out, lse)
