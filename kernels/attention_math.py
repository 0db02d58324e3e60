"""Softmax-attention arithmetic shared by the decode references, and merging of partial results.

A decode step over a split cache (full-rank pages plus low-rank pages, as OjaKV keeps them) runs one
attention per part; each part returns its output with the log-sum-exp of its scores so the parts can
be combined exactly, as if the softmax had run over all keys at once.
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


def merge_attention(first: AttentionOutput, second: AttentionOutput) -> AttentionOutput:
    """Combine attention over two disjoint key sets into attention over their union."""
    if first.out.shape != second.out.shape or first.lse.shape != second.lse.shape:
        raise ValueError(
            f"cannot merge attention outputs of shapes {tuple(first.out.shape)} and {tuple(second.out.shape)}"
        )
    lse = torch.logaddexp(first.lse, second.lse)
    safe_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    weight_first = torch.exp(first.lse - safe_lse)[..., None]
    weight_second = torch.exp(second.lse - safe_lse)[..., None]
    out = first.out.float() * weight_first + second.out.float() * weight_second
    return AttentionOutput(out.to(first.out.dtype), lse)
