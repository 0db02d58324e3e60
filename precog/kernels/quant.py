"""Asymmetric low-bit quantisation of KV tensors with one scale and zero per group of channels.

Each group of `group_size` consecutive values along the last dimension gets a float16 scale and zero
(the group minimum): value ≈ code · scale + zero, code ∈ [0, 2^bits − 1] rounded to nearest. Codes are
packed 8 // bits to a byte, value j of a byte in bits [j·bits, (j+1)·bits) (least significant first).
For every value inside the stored range the round-trip error is at most scale / 2; the stored range
covers the group up to float16 rounding of its minimum and maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precog.kernels.dispatch import Backend, use_triton

SUPPORTED_BITS = (2, 4, 8)
METADATA_DTYPE = torch.float16
_FLOAT16_MAX = 65504.0


@dataclass(frozen=True)
class QuantizedTensor:
    """A quantised tensor of `shape`: packed codes [rows, D·bits/8] and scale, zero [rows, D/group_size]."""

    packed: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes held: codes plus per-group metadata."""
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scale, self.zero))


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes [..., D] in [0, 2^bits) → uint8 [..., D·bits/8]."""
    _check_bits(bits)
    per_byte = 8 // bits
    if codes.dim() == 0 or codes.shape[-1] % per_byte:
        raise ValueError(f"the last dimension must be a multiple of {per_byte} to pack {bits}-bit codes")
    if codes.numel() and not bool(((codes >= 0) & (codes < (1 << bits))).all()):
        raise ValueError(f"{bits}-bit codes must lie in [0, {(1 << bits) - 1}]")
    grouped = codes.to(torch.int32).reshape(*codes.shape[:-1], codes.shape[-1] // per_byte, per_byte)
    packed = grouped[..., 0].clone()
    for j in range(1, per_byte):  # a short loop of whole-tensor ops: far faster than a broadcast shift-sum
        packed |= grouped[..., j] << (j * bits)
    return packed.to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 [..., B] → integer codes [..., B·8/bits] (int32), the inverse of `pack_codes`."""
    _check_bits(bits)
    per_byte = 8 // bits
    wide = packed.to(torch.int32)
    codes = torch.stack([(wide >> (j * bits)) & ((1 << bits) - 1) for j in range(per_byte)], dim=-1)
    return codes.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte)


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")


def check_quantize_inputs(x: torch.Tensor, bits: int, group_size: int) -> None:
    """Raise ValueError unless `x` can be quantised at `bits` in groups of `group_size`."""
    _check_bits(bits)
    if group_size < 8 // bits or group_size & (group_size - 1):
        raise ValueError(f"group_size must be a power of two ≥ {8 // bits} at {bits} bits, got {group_size}")
    if x.dim() == 0 or not x.is_floating_point():
        raise ValueError(
            f"x must be a floating-point tensor with a channel dimension, got {x.dtype} {tuple(x.shape)}"
        )
    if x.shape[-1] % group_size:
        raise ValueError(f"last dimension {x.shape[-1]} is not a multiple of group_size {group_size}")
    if x.numel() and not bool((x.abs() <= _FLOAT16_MAX).all()):
        raise ValueError(
            f"x must be finite with |x| ≤ {_FLOAT16_MAX} (scales and zeros are stored as float16)"
        )


def quantize_ref(x: torch.Tensor, bits: int, group_size: int) -> QuantizedTensor:
    """Torch reference: per-group min/max → float16 scale and zero → rounded, clamped, packed codes."""
    check_quantize_inputs(x, bits, group_size)
    levels = (1 << bits) - 1
    groups = x.float().reshape(-1, x.shape[-1] // group_size, group_size)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)
    scale = ((high - low) / levels).to(METADATA_DTYPE)
    zero = low.to(METADATA_DTYPE)
    scale32, zero32 = scale.float()[..., None], zero.float()[..., None]
    safe_scale = torch.where(scale32 > 0, scale32, torch.ones_like(scale32))
    steps = torch.where(scale32 > 0, (groups - zero32) / safe_scale, torch.zeros_like(groups))
    codes = torch.floor(steps + 0.5).clamp(0, levels)
    packed = pack_codes(codes.reshape(groups.shape[0], -1), bits)
    return QuantizedTensor(packed, scale, zero, bits, group_size, tuple(x.shape))


def dequantize_ref(q: QuantizedTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Torch reference: code · scale + zero, in float32, cast to `dtype`, in the original shape."""
    rows = q.packed.shape[0]
    codes = unpack_codes(q.packed, q.bits).reshape(rows, -1, q.group_size).float()
    values = codes * q.scale.float()[..., None] + q.zero.float()[..., None]
    return values.reshape(q.shape).to(dtype)


def quantize(x: torch.Tensor, bits: int, group_size: int, backend: Backend = "auto") -> QuantizedTensor:
    """Quantise `x` along its last dimension; the Triton kernel on CUDA tensors, `quantize_ref` otherwise."""
    if not use_triton(backend, x):
        return quantize_ref(x, bits, group_size)
    check_quantize_inputs(x, bits, group_size)
    from precog.kernels.triton_kernels.quant import launch_quantize

    packed, scale, zero = launch_quantize(x.reshape(-1, x.shape[-1]), bits, group_size)
    return QuantizedTensor(packed, scale, zero, bits, group_size, tuple(x.shape))


def dequantize(
    q: QuantizedTensor, dtype: torch.dtype = torch.float32, backend: Backend = "auto"
) -> torch.Tensor:
    """Rebuild the tensor; the Triton kernel on CUDA tensors, `dequantize_ref` otherwise."""
    if not use_triton(backend, q.packed):
        return dequantize_ref(q, dtype)
    from precog.kernels.triton_kernels.quant import launch_dequantize

    return launch_dequantize(q.packed, q.scale, q.zero, q.bits, q.group_size, dtype).reshape(q.shape)
