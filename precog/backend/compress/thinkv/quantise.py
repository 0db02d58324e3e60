"""Round KV through the low-bit kernels (precog.kernels.quant) and count what the packed form takes.

Values are quantised per token (groups of channels), keys per channel (groups of tokens), as KIVI
(Liu et al., arXiv 2402.02750) found keys need: a few key channels carry outliers far larger than
the rest, so a per-token group that contains one loses every other channel's precision. A per-channel
group of fewer than `group_size` tokens (a short thought, the prompt's tail) is padded to a power of
two by repeating its last token, which leaves its range unchanged; the padding's codes are counted.
"""

from __future__ import annotations

import torch

from precog.kernels import dequantize, quantize


def _padded(chunk: torch.Tensor, bits: int) -> torch.Tensor:
    length = chunk.shape[-1]
    width = max(1 << (length - 1).bit_length(), 8 // bits)
    if width == length:
        return chunk
    return torch.cat([chunk, chunk[..., -1:].expand(*chunk.shape[:-1], width - length)], dim=-1)


def quantise_tokens(x: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, int]:
    """x [m, KVH, D] rounded per token in groups of group_size channels; returns it and the bytes."""
    q = quantize(x, bits, group_size)
    return dequantize(q, x.dtype), q.nbytes


def quantise_channels(x: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, int]:
    """x [m, KVH, D] rounded per channel in groups of up to group_size tokens; returns it and the bytes."""
    channels = x.permute(1, 2, 0)  # [KVH, D, m]
    out, nbytes = torch.empty_like(channels), 0
    for start in range(0, channels.shape[-1], group_size):
        chunk = channels[..., start : start + group_size]
        padded = _padded(chunk, bits)
        q = quantize(padded.contiguous(), bits, padded.shape[-1])
        out[..., start : start + group_size] = dequantize(q, x.dtype)[..., : chunk.shape[-1]]
        nbytes += q.nbytes
    return out.permute(2, 0, 1), nbytes
