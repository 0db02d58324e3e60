"""Random eviction: the floor every other press must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precog.backend.compress.base import LayerInputs, ScorerPress


@dataclass
class RandomPress(ScorerPress):
    """Uniform random scores from a seeded generator, so a run can be repeated."""

    seed: int = 0

    def score(self, inputs: LayerInputs) -> torch.Tensor:
        """-> [KVH, T] uniform in [0, 1)."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.rand(inputs.num_kv_heads, inputs.num_tokens, generator=generator)
