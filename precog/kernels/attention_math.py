"""Softmax-attention arithmetic shared by the decode references, and merging of partial results.

A decode step over a split cache (full-rank pages plus low-rank pages, as OjaKV keeps them, or page
ranges handled by separate GPU programs) runs one attention per part; each part returns its output
with the log-sum-exp of its scores so the parts combine exactly, as if one softmax had run over all keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AttentionOutput(NamedTuple):
    """Attention result for one query per sequence.

    out: [num_seqs, num_q_heads, head_dim], in the query's dtype.
    lse: [num_seqs, num_q_heads] float32, natural-log sum of exp(scaled scores); -inf over no keys.
    """

    out: torch.Tensor
    lse: torch.Tensor


def masked_attention(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped attention of one query per head over the first `lengths[s]` keys of each sequence.

    queries [S, Hkv, G, E], keys [S, T, Hkv, E], values [S, T, Hkv, F], lengths [S] →
    (out [S, Hkv, G, F], lse [S, Hkv, G]), all float32. A sequence with no keys gets zeros and -inf.
    """
    scores = torch.einsum("shge,sthe->shgt", queries.float(), keys.float()) * scale
    valid = torch.arange(keys.shape[1], device=keys.device)[None, :] < lengths[:, None].to(keys.device)
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    finite_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    probs = torch.exp(scores - finite_lse[..., None])
    out = torch.einsum("shgt,sthf->shgf", probs, values.float())
    return out, lse


def combine_partials(out_parts: torch.Tensor, lse_parts: torch.Tensor) -> AttentionOutput:
    """Attention over the union of P disjoint key sets from each set's result.

    out_parts [..., P, F] and lse_parts [..., P] → out [..., F] (float32) and lse [...]; parts over no
    keys (lse −inf) count for nothing, and a union of empty parts gives zeros and −inf.
    """
    lse = torch.logsumexp(lse_parts, dim=-1)
    safe_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    weights = torch.exp(lse_parts - safe_lse[..., None])
    out = (out_parts.float() * weights[..., None]).sum(dim=-2)
    return AttentionOutput(out, lse)


def merge_attention(first: AttentionOutput, second: AttentionOutput) -> AttentionOutput:
    """Combine attention over two disjoint key sets into attention over their union."""
    if first.out.shape != second.out.shape or first.lse.shape != second.lse.shape:
        raise ValueError(
            f"cannot merge attention outputs of shapes {tuple(first.out.shape)} and {tuple(second.out.shape)}"
        )
    merged = combine_partials(
        torch.stack([first.out, second.out], dim=-2), torch.stack([first.lse, second.lse], dim=-1)
    )
    return AttentionOutput(merged.out.to(first.out.dtype), merged.lse)
