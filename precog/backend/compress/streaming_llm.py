"""StreamingLLM (Xiao et al., arXiv 2309.17453): keep the first sink tokens and the most recent window."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precog.backend.compress.base import LayerInputs, ScorerPress


@dataclass
class StreamingLLMPress(ScorerPress):
    """Score 1 for the n_sink first tokens and the last (n_kept - n_sink), 0 for the middle ones that go."""

    n_sink: int = 4

    def score(self, inputs: LayerInputs) -> torch.Tensor:
        """keys [KVH, T, D] -> [KVH, T] in {0, 1}."""
        n = inputs.num_tokens
        n_pruned = n - self.num_kept(n)
        scores = torch.ones(inputs.num_kv_heads, n)
        scores[:, self.n_sink : self.n_sink + n_pruned] = 0.0
        return scores
