"""Building paged caches for kernel tests: sequences scattered over shuffled pages among garbage pages."""

from __future__ import annotations

import torch


def paginate(
    planes: list[list[torch.Tensor]], block_size: int, generator: torch.Generator, spare_blocks: int = 3
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-sequence tensors [T_s, H, E] of each plane (keys, values, ...) → one cache per plane
    [N, block_size, H, E], sharing block_tables int32 [S, M] and lengths int32 [S].

    Pages are handed out in a random order and every slot not holding a token is random noise, so a
    kernel that reads a wrong page or a slot past a sequence's length gets a wrong answer. Table
    entries past a sequence's pages are -1.
    """
    lengths = [len(seq) for seq in planes[0]]
    pages_per_seq = [-(-n // block_size) for n in lengths]
    num_blocks = sum(pages_per_seq) + spare_blocks
    order = torch.randperm(num_blocks, generator=generator).tolist()
    tables = torch.full((len(lengths), max([*pages_per_seq, 1])), -1, dtype=torch.int32)
    for s, pages in enumerate(pages_per_seq):
        for p in range(pages):
            tables[s, p] = order.pop()
    caches = []
    for plane in planes:
        heads, dim = plane[0].shape[1:]
        cache = torch.randn((num_blocks, block_size, heads, dim), generator=generator).to(plane[0].dtype)
        for s, seq in enumerate(plane):
            for p in range(pages_per_seq[s]):
                chunk = seq[p * block_size : (p + 1) * block_size]
                cache[tables[s, p], : len(chunk)] = chunk
        caches.append(cache)
    return caches, tables, torch.tensor(lengths, dtype=torch.int32)
