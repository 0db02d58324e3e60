"""Triton expected logits: one program per (batch · query head, tile of keys)."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from precog.kernels.triton_kernels.tiles import dot_extent

TOKENS_PER_PROGRAM = 32


@triton.jit
def _expected_logits_kernel(
    k_ptr, mean_ptr, cov_ptr, out_ptr, tokens, inv_sqrt_dim, half_inv_dim,
    stride_kb, stride_kh, stride_kt, stride_kd,
    stride_mb, stride_mh, stride_md,
    stride_cb, stride_ch, stride_ci, stride_cj,
    stride_ob, stride_oh, stride_ot,
    NUM_Q_HEADS: tl.constexpr, GROUP: tl.constexpr, HAS_COV: tl.constexpr,
    DIM: tl.constexpr, DIM_TILE: tl.constexpr, TOKENS_TILE: tl.constexpr,
):  # fmt: skip
    batch = tl.program_id(0) // NUM_Q_HEADS
    head = tl.program_id(0) % NUM_Q_HEADS
    kv_head = head // GROUP
    t = tl.program_id(1) * TOKENS_TILE + tl.arange(0, TOKENS_TILE)
    d = tl.arange(0, DIM_TILE)
    t_ok = t < tokens
    d_ok = d < DIM
    k = tl.load(
        k_ptr
        + batch * stride_kb
        + kv_head * stride_kh
        + t[:, None].to(tl.int64) * stride_kt
        + d[None, :] * stride_kd,
        mask=t_ok[:, None] & d_ok[None, :],
        other=0.0,
    ).to(tl.float32)
    mean = tl.load(mean_ptr + batch * stride_mb + head * stride_mh + d * stride_md, mask=d_ok, other=0.0)
    logits = tl.sum(k * mean.to(tl.float32)[None, :], axis=1) * inv_sqrt_dim
    if HAS_COV:
        cov = tl.load(
            cov_ptr + batch * stride_cb + head * stride_ch + d[:, None] * stride_ci + d[None, :] * stride_cj,
            mask=d_ok[:, None] & d_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        k_cov = tl.dot(k, cov, input_precision="ieee")
        logits += tl.sum(k_cov * k, axis=1) * half_inv_dim
    tl.store(out_ptr + batch * stride_ob + head * stride_oh + t * stride_ot, logits, mask=t_ok)


def launch_expected_logits(
    keys: torch.Tensor, mean_query: torch.Tensor, cov_query: torch.Tensor | None
) -> torch.Tensor:
    """Checked keys [B, Hkv, T, D], μ [B, Hq, D], Σ [B, Hq, D, D] or None → logits [B, Hq, T] float32."""
    batch, num_kv_heads, tokens, dim = keys.shape
    num_q_heads = mean_query.shape[1]
    logits = torch.empty((batch, num_q_heads, tokens), dtype=torch.float32, device=keys.device)
    if batch == 0 or tokens == 0:
        return logits
    cov = mean_query.new_empty((1, 1, 1, 1)) if cov_query is None else cov_query
    grid = (batch * num_q_heads, triton.cdiv(tokens, TOKENS_PER_PROGRAM))
    _expected_logits_kernel[grid](
        keys, mean_query, cov, logits, tokens, 1.0 / math.sqrt(dim), 0.5 / dim,
        *keys.stride(), *mean_query.stride(), *cov.stride(), *logits.stride(),
        NUM_Q_HEADS=num_q_heads, GROUP=num_q_heads // num_kv_heads, HAS_COV=cov_query is not None,
        DIM=dim, DIM_TILE=dot_extent(dim), TOKENS_TILE=TOKENS_PER_PROGRAM,
    )  # fmt: skip
    return logits
