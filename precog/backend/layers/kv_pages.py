"""One layer's keys or values in the paged cache: a plain tensor in the engine's dtype, or packed pages.

Packed pages (`kv_dtype` int8 / int4) hold each token's K or V of each KV head as low-bit codes with a
float16 scale and zero per group of channels (precog.kernels.quant, quantised per token as it is
written, so a page never needs re-quantising). They are dequantised in the gather that attention does
anyway, so the pool really holds a quarter (int8) or an eighth (int4) of float32's bytes plus the scales.
Every reader and writer of the cache goes through `gather_pages` / `store_pages`, so both kinds serve
the same code path.
"""

from __future__ import annotations

import torch

from precog.kernels import QuantizedTensor, dequantize, quantize
from precog.kernels.quant import METADATA_DTYPE

GROUP_SIZE = 32


class PackedPages:
    """Quantised pages of logical shape [num_blocks, block_size, KVH, D], read back in `dtype`."""

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        kv_heads: int,
        head_dim: int,
        bits: int,
        dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> None:
        self.bits = bits
        self.group_size = min(GROUP_SIZE, head_dim)
        if head_dim % self.group_size or self.group_size * bits < 8:
            raise ValueError(f"head_dim {head_dim} cannot be packed at {bits} bits")
        self.shape = torch.Size((num_blocks, block_size, kv_heads, head_dim))
        self.dtype = dtype
        self.device = device or torch.device("cpu")
        flat = (num_blocks * block_size, kv_heads)
        self.codes = torch.zeros(*flat, head_dim * bits // 8, dtype=torch.uint8, device=self.device)
        self.scale = torch.zeros(*flat, head_dim // self.group_size, dtype=METADATA_DTYPE, device=self.device)
        self.zero = torch.zeros_like(self.scale)

    @staticmethod
    def bytes_per_token(kv_heads: int, head_dim: int, bits: int) -> int:
        group = min(GROUP_SIZE, head_dim)
        return kv_heads * (head_dim * bits // 8 + 2 * METADATA_DTYPE.itemsize * (head_dim // group))

    @property
    def nbytes(self) -> int:
        return sum(t.untyped_storage().nbytes() for t in (self.codes, self.scale, self.zero))

    def store(self, slots: torch.Tensor, x: torch.Tensor) -> None:
        """x [n, KVH, D] into flat slots [n] (both on self.device)."""
        q = quantize(x, self.bits, self.group_size)
        n, kvh = x.shape[0], x.shape[1]
        self.codes.index_copy_(0, slots, q.packed.view(n, kvh, -1))
        self.scale.index_copy_(0, slots, q.scale.view(n, kvh, -1))
        self.zero.index_copy_(0, slots, q.zero.view(n, kvh, -1))

    def gather(self, slots: torch.Tensor) -> torch.Tensor:
        """Dequantised [*slots.shape, KVH, D] in self.dtype."""
        kvh, d = self.shape[2], self.shape[3]
        shape = (*slots.shape, kvh, d)
        flat = slots.reshape(-1)
        q = QuantizedTensor(
            self.codes[flat].view(-1, self.codes.shape[-1]),
            self.scale[flat].view(-1, self.scale.shape[-1]),
            self.zero[flat].view(-1, self.zero.shape[-1]),
            self.bits,
            self.group_size,
            shape,
        )
        return dequantize(q, self.dtype)


Pages = torch.Tensor | PackedPages
LayerPages = tuple[Pages, Pages]  # one layer's (keys, values)


def gather_pages(cache: Pages, slots: torch.Tensor) -> torch.Tensor:
    """The K or V of flat slots (any shape) as [*slots.shape, KVH, D]."""
    if isinstance(cache, PackedPages):
        return cache.gather(slots)
    return cache.view(-1, *cache.shape[2:])[slots]


def store_pages(cache: Pages, slots: torch.Tensor, x: torch.Tensor) -> None:
    """x [n, KVH, D] into flat slots [n], both on the cache's device."""
    if isinstance(cache, PackedPages):
        cache.store(slots, x)
    else:
        cache.view(-1, *cache.shape[2:]).index_copy_(0, slots, x.to(cache.dtype))


def plain_pages(layer: LayerPages) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's pages as tensors, for the paths that index them directly (Triton decode, OjaKV's
    coefficient pages, ThinKV, the sparse tiers); EngineConfig and the request check keep packed pages
    away from them, so a packed layer here is a bug."""
    k, v = layer
    if isinstance(k, PackedPages) or isinstance(v, PackedPages):
        raise TypeError("this attention path needs unpacked KV pages (kv_dtype auto)")
    return k, v


def pages_nbytes(cache: Pages) -> int:
    """Bytes the pages hold in memory."""
    if isinstance(cache, PackedPages):
        return cache.nbytes
    return cache.untyped_storage().nbytes()
