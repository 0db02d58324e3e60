"""The paged KV layout: checking a block table, and gathering a sequence's tokens out of the pages.

A layer's cache is [num_blocks, block_size, num_kv_heads, dim]; sequence s owns the pages listed in
block_tables[s] (int32, padded with anything past the pages it uses) and holds context_lens[s] tokens,
token i living in page block_tables[s, i // block_size] at slot i % block_size.
"""

from __future__ import annotations

import torch

_INDEX_DTYPES = (torch.int32, torch.int64)


def check_block_table(
    block_tables: torch.Tensor, context_lens: torch.Tensor, num_seqs: int, cache: torch.Tensor
) -> None:
    """Raise ValueError unless every token of every sequence maps to a page inside `cache`."""
    if block_tables.dim() != 2 or block_tables.shape[0] != num_seqs:
        raise ValueError(
            f"block_tables must be [num_seqs={num_seqs}, max_blocks], got {tuple(block_tables.shape)}"
        )
    if context_lens.shape != (num_seqs,):
        raise ValueError(f"context_lens must be [num_seqs={num_seqs}], got {tuple(context_lens.shape)}")
    if block_tables.dtype not in _INDEX_DTYPES or context_lens.dtype not in _INDEX_DTYPES:
        raise ValueError(
            f"block tables and lengths must be int32 or int64, not {block_tables.dtype}, {context_lens.dtype}"
        )
    if block_tables.device != cache.device or context_lens.device != cache.device:
        raise ValueError("block_tables, context_lens and the cache must be on the same device")
    num_blocks, block_size = cache.shape[0], cache.shape[1]
    lens = context_lens.long()
    blocks_needed = (lens + block_size - 1) // block_size
    used = torch.arange(block_tables.shape[1], device=lens.device)[None, :] < blocks_needed[:, None]
    ids = block_tables.long()
    out_of_range = used & ((ids < 0) | (ids >= num_blocks))
    bad = (lens < 0) | (blocks_needed > block_tables.shape[1]) | out_of_range.any(dim=1)
    if bool(bad.any()):
        raise ValueError(
            _describe_bad_sequence(int(bad.nonzero()[0, 0]), lens, ids, out_of_range, block_size)
        )


def _describe_bad_sequence(
    seq: int, lens: torch.Tensor, ids: torch.Tensor, out_of_range: torch.Tensor, block_size: int
) -> str:
    length = int(lens[seq])
    if length < 0:
        return f"sequence {seq}: context length {length} is negative"
    if bool(out_of_range[seq].any()):
        index = int(out_of_range[seq].nonzero()[0, 0])
        return f"sequence {seq}: block table entry {index} is {int(ids[seq, index])}, not a page of the cache"
    pages = -(-length // block_size)
    return (
        f"sequence {seq}: context length {length} needs {pages} pages of {block_size}, "
        f"but block tables have room for {ids.shape[1]}"
    )


def gather_tokens(
    cache: torch.Tensor, block_tables: torch.Tensor, context_lens: torch.Tensor
) -> torch.Tensor:
    """Copy each sequence's tokens out of the pages: [num_seqs, max(context_lens), num_kv_heads, dim].

    Slots past a sequence's length hold arbitrary (but in-range) cache entries; mask them by length.
    """
    block_size = cache.shape[1]
    length = int(context_lens.max()) if context_lens.numel() else 0
    positions = torch.arange(length, device=cache.device)
    pages = block_tables.long()[:, positions // block_size]
    valid = positions[None, :] < context_lens.long()[:, None]
    pages = torch.where(valid, pages, torch.zeros_like(pages))
    return cache[pages, (positions % block_size)[None, :]]
