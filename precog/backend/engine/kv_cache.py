"""The preallocated paged KV cache: per layer, keys and values as [num_blocks, block_size, KVH, D]."""

from __future__ import annotations

import torch

from precog.backend.layers.attention import write_kv
from precog.backend.model.spec import ModelSpec


class KVCache:
    def __init__(
        self, spec: ModelSpec, num_blocks: int, block_size: int, dtype: torch.dtype = torch.float32
    ) -> None:
        shape = (num_blocks, block_size, spec.num_kv_heads, spec.head_dim)
        self.block_size = block_size
        self.dtype = dtype
        self.layers = [
            (torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)) for _ in range(spec.num_layers)
        ]
        self.bytes_per_block = self.block_bytes(spec, block_size, dtype)

    @staticmethod
    def block_bytes(spec: ModelSpec, block_size: int, dtype: torch.dtype = torch.float32) -> int:
        return spec.kv_bytes_per_token(dtype) * block_size

    def slots(self, block_table: list[int], start: int, end: int) -> torch.Tensor:
        """Flat slot index of each position in [start, end) of a sequence with this block table."""
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
        """Store positions [start, end) from per-layer [KVH, T, D] tensors (T >= end) into the blocks."""
        slots = self.slots(block_table, start, end)
        for cache, k, v in zip(self.layers, keys, values, strict=True):
            k_new = k[:, start:end].transpose(0, 1).to(cache[0].dtype)
            v_new = v[:, start:end].transpose(0, 1).to(cache[1].dtype)
            write_kv(cache, slots, k_new, v_new)

    def read(self, block_table: list[int], num_tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Copies of positions [0, num_tokens) as per-layer [KVH, T, D] keys and values."""
        slots = self.slots(block_table, 0, num_tokens)
        keys, values = [], []
        for k_cache, v_cache in self.layers:
            keys.append(k_cache.view(-1, *k_cache.shape[2:])[slots].transpose(0, 1).contiguous())
            values.append(v_cache.view(-1, *v_cache.shape[2:])[slots].transpose(0, 1).contiguous())
        return keys, values
