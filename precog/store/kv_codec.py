"""How one block of a prompt's KV cache is kept on disk: a float dtype, or quantised codes with group scales.

The integer formats follow KIVI: keys are quantised per channel (a group runs along the block's tokens,
because a few key channels carry outliers that a per-token group would smear over the rest), values per
token (groups of up to 32 channels). A block shorter than its group is padded by repeating its last token,
which leaves every channel's minimum and maximum unchanged. Codes, scales and zeros come from
`precog.kernels.quant`. Each encoded block is sealed like every stored KV part (`kvblob.seal`).
"""

from __future__ import annotations

import torch

from precog.kernels import QuantizedTensor, dequantize, quantize
from precog.store.kv_formats import KVFormat, check_format
from precog.store.kvblob import CorruptBlobError, seal, unseal

_FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_BITS = {"int8": 8, "int4": 4, "int2": 2}
_MAX_VALUE_GROUP = 32
_HEADER_KEY = "precog-kv-block"

Layers = tuple[list[torch.Tensor], list[torch.Tensor]]


def _value_group(head_dim: int, bits: int) -> int:
    group = _MAX_VALUE_GROUP
    while group > head_dim or head_dim % group:
        group //= 2
    if group < 8 // bits:
        raise ValueError(
            f"head_dim {head_dim} cannot be split into groups of {8 // bits} for {bits}-bit codes"
        )
    return group


def _key_group(tokens: int) -> int:
    """The smallest power of two that holds the block's tokens (at least 8: a whole byte of 2-bit codes)."""
    group = 8
    while group < tokens:
        group *= 2
    return group


def _put_quantised(out: dict[str, torch.Tensor], name: str, q: QuantizedTensor) -> None:
    out[f"{name}.q"], out[f"{name}.s"], out[f"{name}.z"] = (
        t.contiguous() for t in (q.packed, q.scale, q.zero)
    )


def _get_quantised(
    tensors: dict[str, torch.Tensor], name: str, bits: int, group: int, shape: tuple[int, ...]
) -> torch.Tensor:
    q = QuantizedTensor(tensors[f"{name}.q"], tensors[f"{name}.s"], tensors[f"{name}.z"], bits, group, shape)
    return dequantize(q)


def encode_block(keys: list[torch.Tensor], values: list[torch.Tensor], fmt: KVFormat) -> bytes:
    """keys[i], values[i]: [kv_heads, tokens, head_dim] of layer i over the block's tokens."""
    tokens, head_dim = int(keys[0].shape[1]), int(keys[0].shape[2])
    tensors: dict[str, torch.Tensor] = {}
    header: dict[str, int | str] = {"format": fmt, "tokens": tokens, "head_dim": head_dim}
    if fmt in _FLOAT_DTYPES:
        dtype = _FLOAT_DTYPES[fmt]
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            tensors[f"k{i}"], tensors[f"v{i}"] = k.to(dtype).contiguous(), v.to(dtype).contiguous()
    else:
        bits, key_group = _BITS[fmt], _key_group(tokens)
        value_group = _value_group(head_dim, bits)
        header |= {"key_group": key_group, "value_group": value_group}
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            padded = torch.cat([k, k[:, -1:].expand(-1, key_group - tokens, -1)], dim=1) if tokens else k
            _put_quantised(tensors, f"k{i}", quantize(padded.float().transpose(1, 2), bits, key_group))
            _put_quantised(tensors, f"v{i}", quantize(v.float(), bits, value_group))
    return seal(tensors, header, _HEADER_KEY)


def check_block(data: bytes) -> None:
    """CorruptBlobError unless `data` is an intact, readable block (what `verify` asks of each one)."""
    unseal(data, "KV block", _HEADER_KEY)


def decode_block(data: bytes, num_layers: int, kv_heads: int) -> Layers:
    """Float32 keys and values per layer; CorruptBlobError when the bytes are damaged or not a block."""
    tensors, header = unseal(data, "KV block", _HEADER_KEY)
    try:
        fmt, tokens, head_dim = check_format(header["format"]), int(header["tokens"]), int(header["head_dim"])
        if fmt in _FLOAT_DTYPES:
            keys = [tensors[f"k{i}"].float() for i in range(num_layers)]
            values = [tensors[f"v{i}"].float() for i in range(num_layers)]
        else:
            bits, key_group, value_group = _BITS[fmt], int(header["key_group"]), int(header["value_group"])
            key_shape = (kv_heads, head_dim, key_group)
            keys = [
                _get_quantised(tensors, f"k{i}", bits, key_group, key_shape).transpose(1, 2)[:, :tokens]
                for i in range(num_layers)
            ]
            value_shape = (kv_heads, tokens, head_dim)
            values = [
                _get_quantised(tensors, f"v{i}", bits, value_group, value_shape) for i in range(num_layers)
            ]
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CorruptBlobError(f"KV block does not parse: {exc}") from exc
    if any(tuple(k.shape) != (kv_heads, tokens, head_dim) for k in (*keys, *values)):
        raise CorruptBlobError("KV block tensors do not have the shape its header names")
    return [k.contiguous() for k in keys], values
