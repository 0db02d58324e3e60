"""Paged attention, the pure-torch reference (CPU): keys and values are read through each block table.

A step's N new tokens of B sequences are concatenated in order; H query heads share KVH key/value heads
(G = H / KVH each; query head h reads KV head h // G, as Hugging Face's repeat_kv does). The new tokens
of a sequence are its last query_len positions, and each attends causally to all earlier positions of
its own sequence. `plan_attention` turns block tables into gather indices and masks once per step, so
the 30-odd layers of a model only gather and multiply.

Shapes:
    q        [N, H, D]
    k_cache  [num_blocks, block_size, KVH, D]   (this step's keys already written; a tensor or packed
    v_cache  [num_blocks, block_size, KVH, D]    pages, see kv_pages)
    returns  [N, H, D]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precog.backend.layers.kv_pages import Pages, gather_pages


@dataclass(frozen=True, slots=True)
class PrefillSpan:
    """One multi-token chunk: rows [start, end) of q, its cache slots [T] and causal bias [n, T]."""

    start: int
    end: int
    slots: torch.Tensor
    bias: torch.Tensor

    def to(self, device: torch.device) -> PrefillSpan:
        return PrefillSpan(
            self.start, self.end, *(t.to(device, non_blocking=True) for t in (self.slots, self.bias))
        )


@dataclass(frozen=True, slots=True)
class AttentionPlan:
    """Decode rows (one query per sequence), batched: cache slots [b, T], padding bias [b, 1, 1, T];
    also as block tables [b, max_blocks] and lengths [b] for block-table kernels."""

    decode_rows: torch.Tensor
    decode_slots: torch.Tensor
    decode_bias: torch.Tensor
    decode_tables: torch.Tensor
    decode_lens: torch.Tensor
    prefills: list[PrefillSpan]

    def to(self, device: torch.device) -> AttentionPlan:
        """The plan on `device` (built on the host, copied once per step)."""
        if device.type == "cpu":
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return AttentionPlan(
            decode_rows=move(self.decode_rows),
            decode_slots=move(self.decode_slots),
            decode_bias=move(self.decode_bias),
            decode_tables=move(self.decode_tables),
            decode_lens=move(self.decode_lens),
            prefills=[span.to(device) for span in self.prefills],
        )


def _slots(table: list[int], num_tokens: int, block_size: int) -> torch.Tensor:
    positions = torch.arange(num_tokens)
    return (
        torch.tensor(table, dtype=torch.long)[positions // block_size] * block_size + positions % block_size
    )


def plan_attention(
    block_tables: list[list[int]], query_lens: list[int], context_lens: list[int], block_size: int
) -> AttentionPlan:
    """Gather indices and masks for one step (context_lens: cache length of each sequence after it)."""
    decode_rows, decode_slots, decode_lens, decode_tables, prefills = [], [], [], [], []
    start = 0
    for table, n, ctx in zip(block_tables, query_lens, context_lens, strict=True):
        slots = _slots(table, ctx, block_size)
        if n == 1:
            decode_rows.append(start)
            decode_slots.append(slots)
            decode_lens.append(ctx)
            decode_tables.append(table)
        else:
            query_pos = torch.arange(ctx - n, ctx)
            future = torch.arange(ctx)[None, :] > query_pos[:, None]
            bias = torch.zeros(n, ctx).masked_fill_(future, float("-inf"))
            prefills.append(PrefillSpan(start, start + n, slots, bias))
        start += n
    longest = max(decode_lens, default=0)
    padded = torch.zeros(len(decode_slots), longest, dtype=torch.long)
    for i, slots in enumerate(decode_slots):
        padded[i, : len(slots)] = slots
    padding = torch.arange(longest)[None, :] >= torch.tensor(decode_lens, dtype=torch.long)[:, None]
    bias = torch.zeros(len(decode_slots), longest).masked_fill_(padding, float("-inf"))
    tables = torch.zeros(
        len(decode_tables), max((len(t) for t in decode_tables), default=0), dtype=torch.long
    )
    for i, table in enumerate(decode_tables):
        tables[i, : len(table)] = torch.tensor(table, dtype=torch.long)
    return AttentionPlan(
        decode_rows=torch.tensor(decode_rows, dtype=torch.long),
        decode_slots=padded,
        decode_bias=bias[:, None, None, :],
        decode_tables=tables,
        decode_lens=torch.tensor(decode_lens, dtype=torch.long),
        prefills=prefills,
    )


def paged_attention_reference(
    q: torch.Tensor,
    k_cache: Pages,
    v_cache: Pages,
    plan: AttentionPlan,
    scale: float,
    head_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    out = torch.empty_like(q)
    if len(plan.decode_rows):
        out[plan.decode_rows] = decode_attention_reference(q, k_cache, v_cache, plan, scale, head_bias)
    prefill_attention_reference(q, k_cache, v_cache, plan, scale, out)
    return out


def decode_attention_reference(
    q: torch.Tensor,
    k_cache: Pages,
    v_cache: Pages,
    plan: AttentionPlan,
    scale: float,
    head_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The decode rows of q, all in one batched matmul: returns [b, H, D]. head_bias [b, KVH, 1, T]
    (0 or -inf) masks single heads' slots (head-adaptive compression)."""
    _, h, d = q.shape
    kvh = k_cache.shape[2]
    b = len(plan.decode_rows)
    k = gather_pages(k_cache, plan.decode_slots).transpose(1, 2)  # [b, KVH, T, D]
    v = gather_pages(v_cache, plan.decode_slots).transpose(1, 2)
    grouped = q[plan.decode_rows].view(b, kvh, h // kvh, d)
    scores = torch.matmul(grouped, k.transpose(-1, -2)) * scale + plan.decode_bias  # [b, KVH, G, T]
    if head_bias is not None:
        scores = scores + head_bias
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype), v).view(b, h, d)


def prefill_attention_reference(
    q: torch.Tensor,
    k_cache: Pages,
    v_cache: Pages,
    plan: AttentionPlan,
    scale: float,
    out: torch.Tensor,
) -> None:
    """Each multi-token chunk of q, one after another, written into its rows of out [N, H, D]."""
    _, h, d = q.shape
    kvh = k_cache.shape[2]
    for span in plan.prefills:
        rows = span.end - span.start
        k = gather_pages(k_cache, span.slots).transpose(0, 1).unsqueeze(1)  # [KVH, 1, T, D]
        v = gather_pages(v_cache, span.slots).transpose(0, 1).unsqueeze(1)
        grouped = q[span.start : span.end].view(rows, kvh, h // kvh, d).permute(1, 2, 0, 3)  # [KVH, G, n, D]
        scores = torch.matmul(grouped, k.transpose(-1, -2)) * scale + span.bias  # [KVH, G, n, T]
        attended = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype), v)
        out[span.start : span.end] = attended.permute(2, 0, 1, 3).reshape(rows, h, d)


def prefill_attention_sdpa(
    q: torch.Tensor,
    k_cache: Pages,
    v_cache: Pages,
    plan: AttentionPlan,
    scale: float,
    out: torch.Tensor,
) -> None:
    """As `prefill_attention_reference`, through torch's fused scaled_dot_product_attention (flash or
    memory-efficient kernels on CUDA; the chunk's causal bias is its mask, GQA without copying heads)."""
    for span in plan.prefills:
        k = gather_pages(k_cache, span.slots).transpose(0, 1).unsqueeze(0)  # [1, KVH, T, D]
        v = gather_pages(v_cache, span.slots).transpose(0, 1).unsqueeze(0)
        rows = q[span.start : span.end].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        attended = torch.nn.functional.scaled_dot_product_attention(
            rows, k, v, attn_mask=span.bias.to(q.dtype), scale=scale, enable_gqa=True
        )
        out[span.start : span.end] = attended[0].transpose(0, 1)
