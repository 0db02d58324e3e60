"""Triton group quantise / dequantise: one program per (tile of rows, channel group)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from precog.kernels.quant import METADATA_DTYPE

ROWS_PER_PROGRAM = 16


@triton.jit
def _quantize_kernel(
    x_ptr, packed_ptr, scale_ptr, zero_ptr, rows,
    stride_xr, stride_xd, stride_pr, stride_mr,
    BITS: tl.constexpr, GROUP: tl.constexpr, ROWS: tl.constexpr,
):  # fmt: skip
    PER_BYTE: tl.constexpr = 8 // BITS
    LEVELS: tl.constexpr = (1 << BITS) - 1
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    group = tl.program_id(1)
    channel = group * GROUP + tl.arange(0, GROUP)
    row_ok = row < rows
    x = tl.load(
        x_ptr + row[:, None].to(tl.int64) * stride_xr + channel[None, :] * stride_xd,
        mask=row_ok[:, None],
        other=0.0,
    ).to(tl.float32)
    low = tl.min(x, axis=1)
    high = tl.max(x, axis=1)
    scale = ((high - low) / LEVELS).to(tl.float16)
    zero = low.to(tl.float16)
    scale32 = scale.to(tl.float32)[:, None]
    zero32 = zero.to(tl.float32)[:, None]
    steps = tl.where(scale32 > 0, (x - zero32) / tl.where(scale32 > 0, scale32, 1.0), 0.0)
    codes = tl.minimum(tl.maximum(tl.floor(steps + 0.5), 0.0), LEVELS).to(tl.int32)
    shifts = tl.arange(0, PER_BYTE) * BITS
    bytes_ = tl.sum(tl.reshape(codes, (ROWS, GROUP // PER_BYTE, PER_BYTE)) << shifts[None, None, :], axis=2)
    byte_index = group * (GROUP // PER_BYTE) + tl.arange(0, GROUP // PER_BYTE)
    tl.store(
        packed_ptr + row[:, None].to(tl.int64) * stride_pr + byte_index[None, :],
        bytes_.to(tl.uint8),
        mask=row_ok[:, None],
    )
    tl.store(scale_ptr + row.to(tl.int64) * stride_mr + group, scale, mask=row_ok)
    tl.store(zero_ptr + row.to(tl.int64) * stride_mr + group, zero, mask=row_ok)


@triton.jit
def _dequantize_kernel(
    packed_ptr, scale_ptr, zero_ptr, out_ptr, rows,
    stride_pr, stride_mr, stride_or,
    BITS: tl.constexpr, GROUP: tl.constexpr, ROWS: tl.constexpr,
):  # fmt: skip
    PER_BYTE: tl.constexpr = 8 // BITS
    MASK: tl.constexpr = (1 << BITS) - 1
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    group = tl.program_id(1)
    row_ok = row < rows
    byte_index = group * (GROUP // PER_BYTE) + tl.arange(0, GROUP // PER_BYTE)
    bytes_ = tl.load(
        packed_ptr + row[:, None].to(tl.int64) * stride_pr + byte_index[None, :],
        mask=row_ok[:, None],
        other=0,
    ).to(tl.int32)
    shifts = tl.arange(0, PER_BYTE) * BITS
    codes = tl.reshape((bytes_[:, :, None] >> shifts[None, None, :]) & MASK, (ROWS, GROUP)).to(tl.float32)
    scale = tl.load(scale_ptr + row.to(tl.int64) * stride_mr + group, mask=row_ok, other=0.0).to(tl.float32)
    zero = tl.load(zero_ptr + row.to(tl.int64) * stride_mr + group, mask=row_ok, other=0.0).to(tl.float32)
    values = codes * scale[:, None] + zero[:, None]
    channel = group * GROUP + tl.arange(0, GROUP)
    tl.store(
        out_ptr + row[:, None].to(tl.int64) * stride_or + channel[None, :],
        values.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None],
    )


def launch_quantize(x: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, ...]:
    """x [rows, D] (checked) → packed uint8 [rows, D·bits/8], scale and zero float16 [rows, D/group_size]."""
    rows, dim = x.shape
    groups = dim // group_size
    packed = torch.empty((rows, dim * bits // 8), dtype=torch.uint8, device=x.device)
    scale = torch.empty((rows, groups), dtype=METADATA_DTYPE, device=x.device)
    zero = torch.empty_like(scale)
    if rows:
        grid = (triton.cdiv(rows, ROWS_PER_PROGRAM), groups)
        _quantize_kernel[grid](
            x, packed, scale, zero, rows, *x.stride(), packed.stride(0), scale.stride(0),
            BITS=bits, GROUP=group_size, ROWS=ROWS_PER_PROGRAM,
        )  # fmt: skip
    return packed, scale, zero


def launch_dequantize(
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bits: int,
    group_size: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Packed codes and metadata of `rows` rows → values [rows, D] in `dtype`."""
    rows, groups = scale.shape
    out = torch.empty((rows, groups * group_size), dtype=dtype, device=packed.device)
    if rows:
        grid = (triton.cdiv(rows, ROWS_PER_PROGRAM), groups)
        _dequantize_kernel[grid](
            packed, scale, zero, out, rows, packed.stride(0), scale.stride(0), out.stride(0),
            BITS=bits, GROUP=group_size, ROWS=ROWS_PER_PROGRAM,
        )  # fmt: skip
    return out
