"""A sequence's low-rank KV store (OjaKV): coefficient pages taken from the shared block pool, its bases.

Token j of the store lives in page block_table[j // tokens_per_page] at slot j % tokens_per_page of
every layer's key and value cache viewed as coefficient pages (precog.backend.layers.lowrank_attention). The
store's tokens are not in the sequence's full-rank blocks; they count in `Sequence.num_evicted`, so new
tokens still go to cache index position - num_evicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from precog.backend.layers.lowrank_attention import (
    LowRankGroup,
    LowRankPlan,
    coefficient_pages,
    tokens_per_page,
)


@dataclass(slots=True)
class LowRankState:
    """rank r; per layer bases [KVH, D, r]; the pages and how many tokens they hold; num_fixed: the
    full-rank cache entries (sinks, protected tokens) that never move, ahead of the recent window."""

    rank: int
    per_page: int
    basis_k: list[torch.Tensor]
    basis_v: list[torch.Tensor]
    num_fixed: int
    block_table: list[int] = field(default_factory=list)
    num_tokens: int = 0

    def pages_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.per_page)

    def basis_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in (*self.basis_k, *self.basis_v))


def new_state(
    basis_k: list[torch.Tensor], basis_v: list[torch.Tensor], num_fixed: int, block_size: int
) -> LowRankState:
    head_dim, rank = basis_k[0].shape[-2:]
    return LowRankState(rank, tokens_per_page(block_size, head_dim, rank), basis_k, basis_v, num_fixed)


def _slots(state: LowRankState, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(start, end)
    pages = torch.tensor(state.block_table, dtype=torch.long)[positions // state.per_page]
    return pages, positions % state.per_page


def write_coefficients(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    state: LowRankState,
    start: int,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
) -> None:
    """Store per-layer coefficients [KVH, n, r] as the store's tokens [start, start + n)."""
    pages, offsets = _slots(state, start, start + keys[0].shape[1])
    for (k_cache, v_cache), k, v in zip(layers, keys, values, strict=True):
        coefficient_pages(k_cache, state.rank)[pages, offsets] = k.transpose(0, 1).to(k_cache.dtype)
        coefficient_pages(v_cache, state.rank)[pages, offsets] = v.transpose(0, 1).to(v_cache.dtype)


def read_coefficients(
    layers: list[tuple[torch.Tensor, torch.Tensor]], state: LowRankState
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Copies of every stored token's per-layer coefficients [KVH, n, r]."""
    pages, offsets = _slots(state, 0, state.num_tokens)
    keys = [coefficient_pages(k, state.rank)[pages, offsets].transpose(0, 1) for k, _ in layers]
    values = [coefficient_pages(v, state.rank)[pages, offsets].transpose(0, 1) for _, v in layers]
    return keys, values


def _table(tables: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(tables), max(len(t) for t in tables), dtype=torch.long)
    for i, table in enumerate(tables):
        out[i, : len(table)] = torch.tensor(table, dtype=torch.long)
    return out


@dataclass(frozen=True, slots=True)
class LowRankRow:
    """A decode row that reads low-rank pages too: its flat row, full-rank block table and token count,
    and its store."""

    row: int
    block_table: list[int]
    num_full: int
    state: LowRankState


def plan_lowrank(rows: list[LowRankRow]) -> LowRankPlan | None:
    """The step's low-rank decode rows, grouped by rank (None: no row has stored tokens)."""
    by_rank: dict[int, list[LowRankRow]] = {}
    for row in rows:
        if row.state.num_tokens:
            by_rank.setdefault(row.state.rank, []).append(row)
    if not by_rank:
        return None
    groups = []
    for rank, members in by_rank.items():
        states = [m.state for m in members]
        num_layers = len(states[0].basis_k)
        groups.append(
            LowRankGroup(
                rank=rank,
                rows=torch.tensor([m.row for m in members], dtype=torch.long),
                tables=_table([m.block_table for m in members]),
                lens=torch.tensor([m.num_full for m in members], dtype=torch.long),
                coeff_tables=_table([s.block_table for s in states]),
                coeff_lens=torch.tensor([s.num_tokens for s in states], dtype=torch.long),
                basis_k=[torch.stack([s.basis_k[i] for s in states]) for i in range(num_layers)],
                basis_v=[torch.stack([s.basis_v[i] for s in states]) for i in range(num_layers)],
            )
        )
    return LowRankPlan(groups)
