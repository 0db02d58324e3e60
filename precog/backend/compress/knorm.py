"""K-norm (Devoto et al., arXiv 2406.11430): keys with a small L2 norm draw the most attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precog.backend.compress.base import LayerInputs, ScorerPress


@dataclass
class KnormPress(ScorerPress):
    """Score -‖k‖, so the lowest-norm keys are kept (kvpress's sign convention)."""

    def score(self, inputs: LayerInputs) -> torch.Tensor:
        """keys [KVH, T, D] -> [KVH, T]."""
        return -inputs.keys.float().norm(dim=-1)
