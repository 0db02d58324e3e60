"""RoPE bookkeeping for reused KV: move a cached key to another position, and rotate token embeddings.

RoPE turns the pair (x_i, x_{i+D/2}) by the angle position * inv_freq[i] (Hugging Face's rotate-half
layout). Rotations compose, so a key cached at position p is moved to p' by turning it once more by
(p' - p) * inv_freq: no need to keep the unrotated key. Angles are formed in float64 so that a large
position difference costs no precision; a model's `attention_scaling` was applied once when the key was
first rotated and must not be applied again, so the re-rotation is a pure rotation.
"""

from __future__ import annotations

import torch


def rotation(delta: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [N, 1, D] of the angles delta [N] (may be negative) * inv_freq [D/2], in float32."""
    angles = delta.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().float().unsqueeze(1), emb.sin().float().unsqueeze(1)


def rotate(x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x [N, heads, D] turned by the per-row angles of `cos_sin` (rotate-half layout)."""
    cos, sin = cos_sin
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


def rerotate_keys(
    keys: torch.Tensor, old_positions: torch.Tensor, new_positions: torch.Tensor, inv_freq: torch.Tensor
) -> torch.Tensor:
    """keys [N, KVH, D] rotated for old_positions [N] -> the same keys as if computed at new_positions."""
    return rotate(keys, rotation(new_positions - old_positions, inv_freq))


def rope_embeddings(
    embeddings: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, head_dim: int
) -> torch.Tensor:
    """Token embeddings [N, hidden] with RoPE applied at positions [N] (SemShareKV's matching space).

    The hidden vector is read as hidden / head_dim chunks, each rotated like one attention head, so two
    occurrences of a token match best where their positions are close. Raises ValueError when hidden is
    not a multiple of head_dim.
    """
    n, hidden = embeddings.shape
    if hidden % head_dim:
        raise ValueError(f"hidden size {hidden} is not a multiple of head_dim {head_dim}")
    chunks = embeddings.view(n, hidden // head_dim, head_dim)
    return rotate(chunks, rotation(positions, inv_freq)).reshape(n, hidden)
