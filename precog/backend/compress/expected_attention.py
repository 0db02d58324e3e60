"""Expected Attention (Devoto et al., arXiv 2510.00636): score keys by the attention that future
queries, modelled as a Gaussian from the layer's hidden-state statistics, are expected to pay them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from precog.backend.compress.base import LayerInputs, ScorerPress
from precog.kernels import expected_attention_scores


def mean_rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The RoPE rotation [D, D] averaged over the positions of cos, sin [P, D] (rotate-half layout)."""
    d = cos.shape[-1]
    swap = torch.zeros(d, d)
    swap[d // 2 :, : d // 2] = torch.eye(d // 2)
    swap[: d // 2, d // 2 :] = -torch.eye(d // 2)
    rotations = cos[:, :, None] * torch.eye(d) + sin[:, :, None] * swap
    return rotations.mean(dim=0)


@dataclass
class ExpectedAttentionPress(ScorerPress):
    """Per layer: μ = W_q·mean(h) and Σ = the per-head blocks of W_q·Cov(h)·W_qᵀ over the hidden states
    after the sinks; both rotated by the RoPE averaged over the next `n_future_positions`; then
    `kernels.expected_attention_scores` (expected logit with the covariance term, softmax, GQA mean,
    then (· + epsilon)·‖v‖ when use_vnorm). The first n_sink tokens score above every other token.
    Fields, defaults and formula are kvpress's (bench/kvpress_compare_bench.py checks them side by side)."""

    n_future_positions: int = 512
    n_sink: int = 4
    use_covariance: bool = True
    use_vnorm: bool = True
    epsilon: float = 0.0

    def query_statistics(self, inputs: LayerInputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """μ [H, D] and Σ [H, D, D] (or None) of the future queries."""
        skip = max(0, self.n_sink - inputs.first_hidden_position)
        h = inputs.hidden[skip:].float() if inputs.hidden.shape[0] > skip else inputs.hidden.float()
        heads, d = inputs.num_heads, inputs.head_dim
        w_q = inputs.q_weight.float()
        mean_h = h.mean(dim=0)
        mu = F.linear(mean_h, w_q, inputs.q_bias).view(heads, d)
        cov = None
        if self.use_covariance:
            centred = h - mean_h
            cov_h = centred.T @ centred / h.shape[0]
            w_heads = w_q.view(heads, d, -1)  # [H, D, hidden]
            cov = w_heads @ cov_h @ w_heads.transpose(1, 2)  # [H, D, D]
        last = inputs.cos.shape[0]
        positions = torch.arange(inputs.length, inputs.length + self.n_future_positions).clamp(max=last - 1)
        rotation = mean_rotation(inputs.cos[positions], inputs.sin[positions])
        mu = mu @ rotation.T
        if cov is not None:
            cov = rotation @ cov @ rotation.T
        return mu, cov

    def score(self, inputs: LayerInputs) -> torch.Tensor:
        """keys, values [KVH, T, D], hidden [n, hidden] -> [KVH, T]."""
        n_sink = min(self.n_sink, inputs.num_tokens - 1)
        mu, cov = self.query_statistics(inputs)
        values = inputs.values[None, :, n_sink:].float()
        if not self.use_vnorm:  # unit-norm values: the kernel's (p + epsilon)·‖v‖ becomes p, as in kvpress
            values = F.one_hot(torch.zeros(values.shape[:-1], dtype=torch.long), values.shape[-1]).float()
        scores = expected_attention_scores(
            inputs.keys[None, :, n_sink:].float(),
            values,
            mu[None],
            None if cov is None else cov[None],
            self.epsilon if self.use_vnorm else 0.0,
        )[0]
        return F.pad(scores, (n_sink, 0), value=scores.max().item() + 1)
