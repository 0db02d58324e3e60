"""Paged attention, the pure-torch reference (CPU): keys and values are read through each block table.

Shapes (N new tokens of B sequences, concatenated in order; H query heads, G = H / KVH heads per KV head):
    q            [N, H, D]
    k_cache      [num_blocks, block_size, KVH, D]   (this step's keys already written)
    v_cache      [num_blocks, block_size, KVH, D]
    block_tables [B, max_blocks] int64              (rows padded with any valid block id)
    query_lens   B ints: new tokens of each sequence in this step
    context_lens B ints: tokens in each sequence's cache after this step (prefix + new)
    returns      [N, H, D]
Query head h reads KV head h // G, as Hugging Face's repeat_kv does. The new tokens of a sequence are its
last query_len positions, and each attends causally to all earlier positions of its own sequence.
Single-token (decode) sequences are batched into one matmul; multi-token (prefill) chunks run one by one.
"""

from __future__ import annotations

import torch


def paged_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    query_lens: list[int],
    context_lens: list[int],
    scale: float,
) -> torch.Tensor:
    out = torch.empty_like(q)
    starts = [0]
    for n in query_lens:
        starts.append(starts[-1] + n)
    decodes = [i for i, n in enumerate(query_lens) if n == 1]
    if decodes:
        rows = torch.tensor([starts[i] for i in decodes])
        lens = [context_lens[i] for i in decodes]
        out[rows] = _decode(q[rows], k_cache, v_cache, block_tables[decodes], lens, scale)
    for i, n in enumerate(query_lens):
        if n > 1:
            span = slice(starts[i], starts[i + 1])
            out[span] = _prefill(q[span], k_cache, v_cache, block_tables[i], context_lens[i], scale)
    return out


def _gather(cache: torch.Tensor, blocks: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """[..., n_blocks] block ids -> [..., KVH, num_tokens, D] (the first num_tokens slots)."""
    gathered = cache[blocks]  # [..., n_blocks, block_size, KVH, D]
    flat = gathered.flatten(-4, -3)[..., :num_tokens, :, :]
    return flat.transpose(-3, -2)


def _decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    tables: torch.Tensor,
    context_lens: list[int],
    scale: float,
) -> torch.Tensor:
    """One query per sequence, batched: [b, H, D] -> [b, H, D]."""
    b, h, d = q.shape
    kvh, block_size = k_cache.shape[2], k_cache.shape[1]
    longest = max(context_lens)
    n_blocks = -(-longest // block_size)
    keys = _gather(k_cache, tables[:, :n_blocks], longest)  # [b, KVH, T, D]
    values = _gather(v_cache, tables[:, :n_blocks], longest)
    grouped = q.view(b, kvh, h // kvh, d)
    scores = torch.matmul(grouped, keys.transpose(-1, -2)) * scale  # [b, KVH, G, T]
    valid = torch.arange(longest) < torch.tensor(context_lens)[:, None]  # [b, T]
    scores.masked_fill_(~valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, values).view(b, h, d)


def _prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    table: torch.Tensor,
    context_len: int,
    scale: float,
) -> torch.Tensor:
    """Several queries of one sequence: [n, H, D] -> [n, H, D], causal with the cached prefix before them."""
    n, h, d = q.shape
    kvh, block_size = k_cache.shape[2], k_cache.shape[1]
    n_blocks = -(-context_len // block_size)
    keys = _gather(k_cache, table[:n_blocks], context_len)  # [KVH, T, D]
    values = _gather(v_cache, table[:n_blocks], context_len)
    grouped = q.view(n, kvh, h // kvh, d).permute(1, 2, 0, 3)  # [KVH, G, n, D]
    scores = torch.matmul(grouped, keys.transpose(-1, -2).unsqueeze(1)) * scale  # [KVH, G, n, T]
    query_pos = torch.arange(context_len - n, context_len)
    future = torch.arange(context_len)[None, :] > query_pos[:, None]  # [n, T]
    scores.masked_fill_(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, values.unsqueeze(1))  # [KVH, G, n, D]
    return out.permute(2, 0, 1, 3).reshape(n, h, d)
