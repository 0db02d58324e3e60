"""Which tokens the reuse prefill recomputes in each layer (SemShareKV's shrinking recompute plan).

Layers below `full_layers` are computed for every token (layer 0 by default: reused KV deviates most
there relative to what it changes). In each deeper layer the tokens still being computed are scored, and
a share of the matched tokens, `first_ratio * decay ** (layer - full_layers)`, goes on to the next layer:
half of that quota by how far the token's fresh K/V deviate from the reused ones, the rest by how much
attention the prompt's last token pays it. Unmatched tokens and the last token are always computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Preset = Literal["none", "layer0", "full"]


@dataclass(frozen=True, slots=True)
class RecomputeSchedule:
    """full_layers computed for all tokens; then a first_ratio share of matched tokens, shrinking by
    `decay` per layer, never below min_ratio."""

    full_layers: int = 1
    first_ratio: float = 0.3
    decay: float = 0.85
    min_ratio: float = 0.02

    def __post_init__(self) -> None:
        if self.full_layers < 0:
            raise ValueError("full_layers must be >= 0")
        if not (0.0 <= self.min_ratio <= 1.0 and 0.0 <= self.first_ratio <= 1.0 and 0.0 < self.decay <= 1.0):
            raise ValueError("first_ratio and min_ratio must be in [0, 1], decay in (0, 1]")

    @classmethod
    def preset(cls, name: Preset) -> RecomputeSchedule:
        """The ablations: "none" reuses every matched token everywhere, "layer0" recomputes layer 0 only,
        "full" is the shrinking schedule."""
        if name == "none":
            return cls(full_layers=0, first_ratio=0.0, min_ratio=0.0)
        if name == "layer0":
            return cls(full_layers=1, first_ratio=0.0, min_ratio=0.0)
        if name == "full":
            return cls()
        raise ValueError(f"unknown recompute schedule {name!r}; known: none, layer0, full")

    def ratio(self, layer: int) -> float:
        """Share of the matched tokens recomputed past `layer` (1.0 inside the fully computed layers)."""
        if layer < self.full_layers:
            return 1.0
        if self.first_ratio == 0.0:
            return 0.0
        return max(self.min_ratio, self.first_ratio * self.decay ** (layer - self.full_layers))


def select(
    candidates: torch.Tensor, deviation: torch.Tensor, attention: torch.Tensor, quota: int
) -> torch.Tensor:
    """Up to `quota` of `candidates` [C] (token indices): the first half by deviation [C], the rest by
    attention received [C]; returns the chosen token indices, unordered."""
    quota = min(quota, len(candidates))
    if quota <= 0:
        return candidates[:0]
    by_deviation = math.ceil(quota / 2)
    first = torch.topk(deviation, by_deviation).indices
    rest = attention.clone()
    rest[first] = float("-inf")
    second = torch.topk(rest, quota - by_deviation).indices
    return candidates[torch.cat((first, second))]
