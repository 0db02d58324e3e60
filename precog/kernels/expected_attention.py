"""Expected Attention scores (arXiv 2510.00636): how much attention future queries will pay each key.

Future queries of query head h are modelled as Gaussian with mean μ_h and covariance Σ_h (already
averaged over the RoPE rotations of the coming positions). The expected logit of key k is
z = μ_hᵀk/√d + ½·kᵀΣ_h k/d; a softmax over the keys, the mean over the query heads of each KV group
and a factor ‖v‖ (after adding `epsilon`) give one score per KV head and token, as in kvpress.
Sink protection and top-k selection belong to the press that calls this.
"""

from __future__ import annotations

import math

import torch

from precog.kernels.dispatch import Backend, use_triton


def check_expected_attention_inputs(
    keys: torch.Tensor, values: torch.Tensor, mean_query: torch.Tensor, cov_query: torch.Tensor | None
) -> None:
    """Raise ValueError unless shapes are keys/values [B, Hkv, T, ·], μ [B, Hq, D], Σ [B, Hq, D, D]."""
    if keys.dim() != 4 or values.dim() != 4 or keys.shape[:3] != values.shape[:3]:
        raise ValueError(
            "keys and values must be [batch, num_kv_heads, tokens, dim] with matching first three sizes, "
            f"got {tuple(keys.shape)} and {tuple(values.shape)}"
        )
    batch, num_kv_heads, _, head_dim = keys.shape
    if mean_query.dim() != 3 or mean_query.shape[0] != batch or mean_query.shape[2] != head_dim:
        raise ValueError(
            f"mean_query must be [{batch}, num_q_heads, {head_dim}], got {tuple(mean_query.shape)}"
        )
    num_q_heads = mean_query.shape[1]
    if num_kv_heads == 0 or num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads do not split evenly over {num_kv_heads} KV heads")
    cov_shape = (batch, num_q_heads, head_dim, head_dim)
    if cov_query is not None and tuple(cov_query.shape) != cov_shape:
        raise ValueError(f"cov_query must be {list(cov_shape)}, got {tuple(cov_query.shape)}")
    tensors = [keys, values, mean_query] + ([] if cov_query is None else [cov_query])
    if not all(t.is_floating_point() for t in tensors) or len({t.device for t in tensors}) != 1:
        raise ValueError("keys, values, mean_query and cov_query must be floating point on one device")


def expected_logits_ref(
    keys: torch.Tensor, mean_query: torch.Tensor, cov_query: torch.Tensor | None
) -> torch.Tensor:
    """Expected logit of every key for every query head: [B, Hq, T] float32."""
    num_kv_heads, head_dim = keys.shape[1], keys.shape[3]
    group = mean_query.shape[1] // num_kv_heads
    per_query_head = keys.float().repeat_interleave(group, dim=1)
    logits = torch.einsum("bhd,bhtd->bht", mean_query.float(), per_query_head) / math.sqrt(head_dim)
    if cov_query is not None:
        quadratic = torch.einsum("bhti,bhij,bhtj->bht", per_query_head, cov_query.float(), per_query_head)
        logits = logits + quadratic / head_dim / 2
    return logits


def _scores_from_logits(
    logits: torch.Tensor, values: torch.Tensor, num_kv_heads: int, epsilon: float
) -> torch.Tensor:
    batch, num_q_heads, tokens = logits.shape
    probs = torch.softmax(logits, dim=-1).view(batch, num_kv_heads, num_q_heads // num_kv_heads, tokens)
    return (probs.mean(dim=2) + epsilon) * values.float().norm(dim=-1)


def expected_attention_scores_ref(
    keys: torch.Tensor,
    values: torch.Tensor,
    mean_query: torch.Tensor,
    cov_query: torch.Tensor | None,
    epsilon: float = 0.0,
) -> torch.Tensor:
    """Torch reference. keys [B, Hkv, T, D], values [B, Hkv, T, Dv], mean_query [B, Hq, D],
    cov_query [B, Hq, D, D] or None (mean only) → scores [B, Hkv, T] float32."""
    check_expected_attention_inputs(keys, values, mean_query, cov_query)
    logits = expected_logits_ref(keys, mean_query, cov_query)
    return _scores_from_logits(logits, values, keys.shape[1], epsilon)


def expected_attention_scores(
    keys: torch.Tensor,
    values: torch.Tensor,
    mean_query: torch.Tensor,
    cov_query: torch.Tensor | None,
    epsilon: float = 0.0,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Expected Attention scores; the logits (the D² work per key) run as a Triton kernel on CUDA
    tensors, the softmax, group mean and value norms in torch."""
    if not use_triton(backend, keys, values, mean_query):
        return expected_attention_scores_ref(keys, values, mean_query, cov_query, epsilon)
    check_expected_attention_inputs(keys, values, mean_query, cov_query)
    from precog.kernels.triton_kernels.expected_attention import launch_expected_logits

    logits = launch_expected_logits(keys, mean_query, cov_query)
    return _scores_from_logits(logits, values, keys.shape[1], epsilon)
