"""Triton paged decode attention: one program per (sequence, KV head, range of pages), online softmax.

Long contexts are split into page ranges handled by separate programs (flash-decoding), so a batch
with few sequences and KV heads still fills the GPU; the ranges' results are combined by log-sum-exp.
"""

from __future__ import annotations

from functools import cache

import torch
import triton
import triton.language as tl

from precog.kernels.attention_math import AttentionOutput, combine_partials
from precog.kernels.triton_kernels.tiles import dot_extent


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, lse_ptr, scale,
    stride_qs, stride_qh, stride_qd,
    stride_kn, stride_kb, stride_kh, stride_kd,
    stride_vn, stride_vb, stride_vh, stride_vd,
    stride_ts, stride_tm,
    stride_os, stride_oh, stride_op, stride_od,
    stride_ls, stride_lh, stride_lp,
    PAGES_PER_SPLIT: tl.constexpr, GROUP: tl.constexpr, GROUP_TILE: tl.constexpr,
    DIM_K: tl.constexpr, DIM_K_TILE: tl.constexpr,
    DIM_V: tl.constexpr, DIM_V_TILE: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_TILE: tl.constexpr,
):  # fmt: skip
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
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
    first_page = split * PAGES_PER_SPLIT
    end_page = tl.minimum(first_page + PAGES_PER_SPLIT, tl.cdiv(length, BLOCK_SIZE))
    for page_index in range(first_page, end_page):
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
        out_ptr + seq * stride_os + heads[:, None] * stride_oh + split * stride_op + dv[None, :] * stride_od,
        out,
        mask=row_ok[:, None] & (dv[None, :] < DIM_V),
    )
    tl.store(lse_ptr + seq * stride_ls + heads * stride_lh + split * stride_lp, lse, mask=row_ok)


def launch_paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> AttentionOutput:
    """Run the kernel on inputs already checked by precog.kernels.paged_attention."""
    num_seqs, num_q_heads, dim_k = q.shape
    _, block_size, num_kv_heads, dim_v = v_cache.shape
    group = num_q_heads // num_kv_heads
    max_pages = triton.cdiv(int(context_lens.max()), block_size) if num_seqs else 0
    pages_per_split = _pages_per_split(max_pages, num_seqs * num_kv_heads, q.device)
    splits = max(1, triton.cdiv(max_pages, pages_per_split))
    out_parts = torch.empty((num_seqs, num_q_heads, splits, dim_v), dtype=torch.float32, device=q.device)
    lse_parts = torch.empty((num_seqs, num_q_heads, splits), dtype=torch.float32, device=q.device)
    if num_seqs:
        _paged_decode_kernel[(num_seqs, num_kv_heads, splits)](
            q, k_cache, v_cache, block_tables, context_lens, out_parts, lse_parts, scale,
            *q.stride(), *k_cache.stride(), *v_cache.stride(), *block_tables.stride(),
            *out_parts.stride(), *lse_parts.stride(),
            PAGES_PER_SPLIT=pages_per_split, GROUP=group, GROUP_TILE=dot_extent(group),
            DIM_K=dim_k, DIM_K_TILE=dot_extent(dim_k),
            DIM_V=dim_v, DIM_V_TILE=dot_extent(dim_v),
            BLOCK_SIZE=block_size, BLOCK_TILE=dot_extent(block_size),
        )  # fmt: skip
    combined = combine_partials(out_parts, lse_parts)
    return AttentionOutput(combined.out.to(q.dtype), combined.lse)


MIN_PAGES_PER_SPLIT = 4


def _pages_per_split(max_pages: int, programs_per_split: int, device: torch.device) -> int:
    """Pages per program: enough programs for about four per streaming multiprocessor, but never a
    range so short that combining the parts costs more than it saves."""
    target_programs = 4 * _multiprocessors(device)
    splits_wanted = max(1, triton.cdiv(target_programs, max(programs_per_split, 1)))
    return max(MIN_PAGES_PER_SPLIT, triton.cdiv(max_pages, splits_wanted))


@cache
def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).multi_processor_count)
    return 16  # the interpreter on a CPU: any count exercises the same code
