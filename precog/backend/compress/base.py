"""The press interface: score every cached prompt token of one layer, keep the best (1 - ratio) share.

Modelled on kvpress's `ScorerPress` (a small base whose subclasses only write `score`), but run by our
paged engine after a prefill rather than inside a framework's forward pass: the engine gathers the
kept positions into fewer blocks and frees the rest, so the memory is really returned.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from precog.backend.model.rope import apply_rope


@dataclass(frozen=True, slots=True)
class LayerInputs:
    """One layer's prompt KV and what a press may score it with.

    keys     [KVH, T, D]   RoPE already applied at positions 0..T-1
    values   [KVH, T, D]
    hidden   [n, hidden]   the attention inputs (after the input norm) of the last n positions, n <= T
                           (positions imported from a KV blob have none)
    q_weight [H*D, hidden] and q_bias [H*D] or None: the layer's query projection
    cos, sin [P, D]        the model's RoPE table for positions 0..P-1
    num_positions          the sequence's length in positions; more than T once tokens were evicted
                           (0: T). hidden holds the inputs of its last n positions.
    """

    keys: torch.Tensor
    values: torch.Tensor
    hidden: torch.Tensor
    q_weight: torch.Tensor
    q_bias: torch.Tensor | None
    cos: torch.Tensor
    sin: torch.Tensor
    num_heads: int
    num_positions: int = 0

    @property
    def num_tokens(self) -> int:
        return int(self.keys.shape[1])

    @property
    def length(self) -> int:
        """The sequence's length in positions (the next token's position)."""
        return self.num_positions or self.num_tokens

    @property
    def num_kv_heads(self) -> int:
        return int(self.keys.shape[0])

    @property
    def head_dim(self) -> int:
        return int(self.keys.shape[2])

    @property
    def first_hidden_position(self) -> int:
        """The position of hidden[0]."""
        return self.length - int(self.hidden.shape[0])

    def queries(self, last: int) -> torch.Tensor:
        """Rotated queries [H, n, D] of the last n = min(last, len(hidden)) positions."""
        rows = self.hidden[-last:]
        n = rows.shape[0]
        q = torch.nn.functional.linear(rows, self.q_weight, self.q_bias).view(n, self.num_heads, -1)
        positions = torch.arange(self.length - n, self.length)
        cos_sin = (self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1))
        return apply_rope(q, cos_sin).transpose(0, 1)


@dataclass
class ScorerPress(ABC):
    """Keep the int(T * (1 - compression_ratio)) best-scored tokens of every KV head.

    Every layer and KV head of a sequence keeps the same number of tokens (the paged cache shares one
    block table across them), but each head chooses its own tokens. Protected positions (system prompt,
    marked instructions: the "Pitfalls" whitelist, arXiv 2510.00231) are always kept and the rest of
    the budget goes to the top scores, so protection never grows the cache beyond max(budget, protected).
    """

    compression_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.compression_ratio < 1.0:
            raise ValueError(f"compression ratio must be in [0, 1), got {self.compression_ratio}")

    @abstractmethod
    def score(self, inputs: LayerInputs) -> torch.Tensor:
        """[KVH, T] importance of each cached token (higher is kept first)."""

    def num_kept(self, num_tokens: int, num_protected: int = 0) -> int:
        budget = int(num_tokens * (1.0 - self.compression_ratio))
        return min(num_tokens, max(budget, num_protected, 1))

    def select(self, inputs: LayerInputs, protected: torch.Tensor) -> torch.Tensor:
        """Indices [KVH, n_kept] (ascending) of the tokens to keep; protected [T] or [KVH, T] bool (every
        head protects as many) is always kept."""
        protected = protected.expand(inputs.num_kv_heads, inputs.num_tokens)
        n_kept = self.num_kept(inputs.num_tokens, int(protected.sum(dim=-1).max()))
        scores = self.score(inputs).float().masked_fill(protected, float("inf"))
        return scores.topk(n_kept, dim=-1).indices.sort(dim=-1).values

    def select_head_adaptive(
        self, inputs: LayerInputs, protected: torch.Tensor, floor_share: float = 0.2
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head-adaptive budgets (AdaKV, arXiv 2407.11550; kvpress's AdaKVPress): the layer keeps
        KVH * n_kept tokens in all, as `select` does, but a head gets as many as its scores win against
        every head's: each head keeps at least ceil(floor_share * n_kept) (and its protected tokens),
        the rest of the layer's budget goes to the best remaining scores of any head.

        Returns indices [KVH, max count], ascending within each head's count, then padding (index 0),
        and counts [KVH] that sum to KVH * n_kept."""
        kvh, n = inputs.num_kv_heads, inputs.num_tokens
        protected = protected.expand(kvh, n)
        num_protected = int(protected.sum(dim=-1).max())
        n_kept = self.num_kept(n, num_protected)
        floor = min(n_kept, max(num_protected, math.ceil(floor_share * n_kept)))
        scores = self.score(inputs).float().masked_fill(protected, float("inf"))
        order = scores.argsort(dim=-1, descending=True, stable=True)
        rest = scores.gather(-1, order)[:, floor:]
        counts = torch.full((kvh,), floor, dtype=torch.long)
        extra = kvh * (n_kept - floor)
        if extra:
            winners = rest.flatten().topk(extra).indices // rest.shape[1]
            counts += torch.bincount(winners, minlength=kvh)
        width = int(counts.max())
        padding = torch.arange(width)[None, :] >= counts[:, None]
        kept = order[:, :width].masked_fill(padding, n).sort(dim=-1).values.masked_fill(padding, 0)
        return kept, counts
