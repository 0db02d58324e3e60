"""Per-sequence ThinKV bookkeeping: thoughts, the cache index -> position map, widths and scores.

The cache of a ThinKV sequence stays a dense prefix of its blocks: when tokens are evicted the last
cached tokens move into the freed slots (so a slot is reused in place, inside its page) and the
emptied tail blocks go back to the block manager. `positions[i]` is the logical position whose K/V
cache index i holds; keys keep their RoPE rotation, so attention does not care about the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from precog.backend.compress.thinkv.policy import FULL_BITS, ThinKVPolicy, Thought


@dataclass(slots=True)
class ThinKVReport:
    """What ThinKV did to one request (kept after it finishes, for evaluation)."""

    thoughts: list[tuple[int, int, str, float, float]] = field(default_factory=list)  # + sparsity, visible
    tokens_evicted: int = 0
    effective_bytes: int = 0
    peak_effective_bytes: int = 0
    full_bytes: int = 0
    blocks_held: int = 0


@dataclass(eq=False)
class ThinKVState:
    policy: ThinKVPolicy
    ratio: float
    num_prompt_tokens: int
    started: bool = False
    open_start: int = 0
    thoughts: list[Thought] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    bits: list[int] = field(default_factory=list)
    nbytes: list[float] = field(default_factory=list)  # effective bytes of each cached token
    scores: dict[int, float] = field(default_factory=dict)
    hidden: list[list[torch.Tensor]] = field(default_factory=list)
    hidden_start: int = 0
    report: ThinKVReport = field(default_factory=ThinKVReport)

    def __post_init__(self) -> None:
        self.open_start = self.num_prompt_tokens

    def reset(self) -> None:
        """After preemption every token is recomputed: start over (the report's counters stay)."""
        self.started = False
        self.open_start = self.num_prompt_tokens
        self.thoughts, self.positions, self.bits, self.nbytes, self.scores = [], [], [], [], {}
        self.hidden, self.hidden_start = [], 0

    @property
    def compresses(self) -> bool:
        """Ratio 0 still segments and classifies but leaves the KV untouched."""
        return self.ratio > 0.0

    def capture(self, first: int, num_layers: int) -> list[list[torch.Tensor]]:
        """Chunks lists the model runner appends the attention inputs of positions first.. to."""
        if not self.hidden or not any(self.hidden):
            self.hidden = [[] for _ in range(num_layers)]
            self.hidden_start = first
        return self.hidden

    def hidden_rows(self, layer: int, start: int, end: int) -> torch.Tensor:
        """The captured attention inputs [end - start, hidden] of positions [start, end) at `layer`."""
        rows = torch.cat(self.hidden[layer])
        return rows[start - self.hidden_start : end - self.hidden_start]

    def drop_hidden(self, layers: list[int], before: int) -> None:
        """Forget captured rows of positions < before, and every row of layers not sampled."""
        for layer, chunks in enumerate(self.hidden):
            if layer not in layers or not chunks:
                chunks.clear()
                continue
            rows = torch.cat(chunks)[max(0, before - self.hidden_start) :]
            chunks[:] = [rows] if len(rows) else []
        self.hidden_start = max(self.hidden_start, before)

    def track(self, num_cached: int, num_evicted: int, full_bytes: int) -> None:
        """Extend the index map to the tokens the cache holds now (new ones at full precision)."""
        for index in range(len(self.positions), num_cached):
            self.positions.append(index + num_evicted)
            self.bits.append(FULL_BITS)
            self.nbytes.append(float(full_bytes))
