"""The preallocated paged KV cache: per layer, keys and values as [num_blocks, block_size, KVH, D] pages,
in the engine's dtype or packed to int8 / int4 codes with group scales (precog.backend.layers.kv_pages)."""

from __future__ import annotations

import torch

from precog.backend.layers.attention import write_kv
from precog.backend.layers.kv_pages import LayerPages, PackedPages, gather_pages, pages_nbytes, plain_pages
from precog.backend.model.spec import ModelSpec

PACKED_BITS = {"int8": 8, "int4": 4}


class KVCache:
    def __init__(
        self,
        spec: ModelSpec,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype = torch.float32,
        kv_dtype: str = "auto",
        device: torch.device | None = None,
    ) -> None:
        """kv_dtype: "auto" (pages in `dtype`) or a PACKED_BITS key (pages read back in `dtype`)."""
        self.block_size = block_size
        self.dtype = dtype
        self.device = device or torch.device("cpu")
        self.kv_dtype = kv_dtype
        self.layers: list[LayerPages] = [
            (self._pages(spec, num_blocks, block_size), self._pages(spec, num_blocks, block_size))
            for _ in range(spec.num_layers)
        ]
        self.bytes_per_block = self.nbytes // num_blocks

    def _pages(self, spec: ModelSpec, num_blocks: int, block_size: int) -> torch.Tensor | PackedPages:
        if not self.packed:
            shape = (num_blocks, block_size, spec.num_kv_heads, spec.head_dim)
            return torch.zeros(shape, dtype=self.dtype, device=self.device)
        bits = PACKED_BITS[self.kv_dtype]
        return PackedPages(
            num_blocks, block_size, spec.num_kv_heads, spec.head_dim, bits, self.dtype, self.device
        )

    @property
    def packed(self) -> bool:
        return self.kv_dtype != "auto"

    def plain_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's pages as tensors (see kv_pages.plain_pages)."""
        return [plain_pages(layer) for layer in self.layers]

    @property
    def nbytes(self) -> int:
        """Bytes the pool holds (every layer's key and value pages with their scales)."""
        return sum(pages_nbytes(k) + pages_nbytes(v) for k, v in self.layers)

    @staticmethod
    def block_bytes(
        spec: ModelSpec, block_size: int, dtype: torch.dtype = torch.float32, kv_dtype: str = "auto"
    ) -> int:
        """Bytes one block takes, before any is allocated (for sizing the pool from a budget)."""
        if kv_dtype == "auto":
            return spec.kv_bytes_per_token(dtype) * block_size
        per_token = PackedPages.bytes_per_token(spec.num_kv_heads, spec.head_dim, PACKED_BITS[kv_dtype])
        return 2 * spec.num_layers * per_token * block_size

    def slots(self, block_table: list[int], start: int, end: int) -> torch.Tensor:
        """Flat slot index (a host tensor) of each position in [start, end) of a sequence with this block
        table."""
        positions = torch.arange(start, end)
        blocks = torch.tensor(block_table, dtype=torch.long)[positions // self.block_size]
        return blocks * self.block_size + positions % self.block_size

    def write(
        self,
        block_table: list[int],
        start: int,
        end: int,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> None:
        """Store positions [start, end) from per-layer [KVH, T, D] tensors (T >= end, on any device) into
        the blocks."""
        slots = self.slots(block_table, start, end).to(self.device)
        for cache, k, v in zip(self.layers, keys, values, strict=True):
            k_new, v_new = (x[:, start:end].transpose(0, 1).to(self.device) for x in (k, v))
            write_kv(cache, slots, k_new, v_new)

    def read(self, block_table: list[int], num_tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Copies of positions [0, num_tokens) as per-layer [KVH, T, D] keys and values (in self.dtype, on
        self.device)."""
        slots = self.slots(block_table, 0, num_tokens).to(self.device)
        keys, values = [], []
        for k_cache, v_cache in self.layers:
            keys.append(gather_pages(k_cache, slots).transpose(0, 1).contiguous())
            values.append(gather_pages(v_cache, slots).transpose(0, 1).contiguous())
        return keys, values
