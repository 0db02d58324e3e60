"""SnapKV (Li et al., arXiv 2404.14469): the prompt's last queries show which earlier keys matter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from precog.backend.compress.base import LayerInputs, ScorerPress


@dataclass
class SnapKVPress(ScorerPress):
    """Attention of the last `window_size` queries to the earlier keys, averaged over those queries,
    smoothed by an average pool of `kernel_size`, averaged over each KV group's query heads; the
    observation window itself scores above every other token. As kvpress's SnapKVPress."""

    window_size: int = 64
    kernel_size: int = 5

    def score(self, inputs: LayerInputs) -> torch.Tensor:
        """keys [KVH, T, D], the last min(window, T - 1) hidden rows -> [KVH, T]."""
        n, kvh = inputs.num_tokens, inputs.num_kv_heads
        window = min(self.window_size, n - 1, inputs.hidden.shape[0])
        if window < 1:
            return torch.ones(kvh, n)
        queries = inputs.queries(window)  # [H, w, D]
        group = inputs.num_heads // kvh
        keys = inputs.keys.float().repeat_interleave(group, dim=0)  # [H, T, D]
        logits = queries @ keys.transpose(1, 2) / math.sqrt(inputs.head_dim)  # [H, w, T]
        query_pos = torch.arange(n - window, n)
        future = torch.arange(n)[None, :] > query_pos[:, None]
        weights = torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)[..., : n - window]
        scores = weights.mean(dim=1)  # [H, T - w]
        scores = F.avg_pool1d(scores[None], self.kernel_size, stride=1, padding=self.kernel_size // 2)[0]
        scores = scores.view(kvh, group, n - window).mean(dim=1)
        return F.pad(scores, (0, window), value=scores.max().item() + 1)
