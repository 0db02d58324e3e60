"""Rotary position embedding with a precomputed cos/sin table (Hugging Face's rotate-half layout)."""

from __future__ import annotations

import torch


class RotaryEmbedding:
    """cos/sin for positions 0..max_positions-1, computed the way transformers does (fp32 outer product)."""

    def __init__(self, inv_freq: torch.Tensor, attention_scaling: float, max_positions: int) -> None:
        freqs = torch.arange(max_positions, dtype=torch.float)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos() * attention_scaling  # [max_positions, head_dim]
        self.sin = emb.sin() * attention_scaling

    def to(self, device: torch.device) -> RotaryEmbedding:
        self.cos, self.sin = self.cos.to(device), self.sin.to(device)
        return self

    def at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [N, 1, D] for positions [N]; looked up once per step, used by every layer."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rope(x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x [N, heads, D] -> x rotated by its positions' angles."""
    cos, sin = cos_sin
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
