"""Token matching by locality-sensitive hashing (random hyperplanes, several tables), as SemShareKV does.

Each token is a point in the model's input-embedding space, by default with RoPE applied at its position
(see rerotate.rope_embeddings), so the same token matches best where its position is close. Every
table hashes a token to the sign pattern of `bits_per_table` random hyperplanes; a reference token is a
candidate for a new token when they share a bucket in at least one table. Among the candidates the one
with the smallest Hamming distance over all tables' bits wins (ties: the nearest position), and it counts
as a match when the cosine that distance estimates reaches `min_similarity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from precog.backend.reuse.rerotate import rope_embeddings


@dataclass(frozen=True, slots=True)
class LSHConfig:
    """num_tables x bits_per_table hyperplanes; short table keys catch moderately similar tokens as
    candidates, the full signature ranks them. use_rope=False matches on plain embeddings (ablation)."""

    num_tables: int = 16
    bits_per_table: int = 6
    min_similarity: float = 0.7
    use_rope: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.num_tables <= 64 or not 1 <= self.bits_per_table <= 30:
            raise ValueError("num_tables must be in [1, 64] and bits_per_table in [1, 30]")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError("min_similarity must be in [-1, 1]")


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """ref_index [N]: the reference token reused for each new token (-1: none); similarity [N]: the
    cosine the signatures estimate for that pair (or for the best candidate, when it was too far)."""

    ref_index: torch.Tensor
    similarity: torch.Tensor

    @property
    def matched(self) -> torch.Tensor:
        return self.ref_index >= 0

    @property
    def num_matched(self) -> int:
        return int(self.matched.sum())

    @property
    def rate(self) -> float:
        return self.num_matched / max(1, len(self.ref_index))


def token_space(
    embedding: torch.Tensor, token_ids: list[int], inv_freq: torch.Tensor, head_dim: int, use_rope: bool
) -> torch.Tensor:
    """[N, hidden] points to hash: rows of the input-embedding matrix, RoPE-rotated at 0..N-1 if asked.

    A pure function of (model, token ids): SemShareKV keeps these per stored prompt; we recompute them
    from the blob's token ids, which costs one lookup and one rotation and never goes stale."""
    points = embedding[torch.tensor(token_ids, dtype=torch.long)].float()
    if not use_rope:
        return points
    return rope_embeddings(points, torch.arange(len(token_ids)), inv_freq, head_dim)


class LSHMatcher:
    def __init__(self, config: LSHConfig, dim: int) -> None:
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        self._planes = torch.randn(config.num_tables * config.bits_per_table, dim, generator=generator)
        self._weights = 2 ** torch.arange(config.bits_per_table, dtype=torch.long)

    def signatures(self, points: torch.Tensor) -> torch.Tensor:
        """[N, dim] -> [N, tables * bits] bool: the side of each hyperplane each point lies on."""
        return (points.float() @ self._planes.T) > 0

    def _bucket_keys(self, signs: torch.Tensor) -> torch.Tensor:
        """[N, tables] long: each table's bucket (its bits read as one integer)."""
        c = self.config
        return (signs.view(-1, c.num_tables, c.bits_per_table).long() * self._weights).sum(-1)

    def match(self, query: torch.Tensor, reference: torch.Tensor) -> TokenMatch:
        """Match every query point [N, dim] to a reference point [M, dim] (see the module docstring)."""
        n, m = len(query), len(reference)
        if n == 0 or m == 0:
            return TokenMatch(torch.full((n,), -1, dtype=torch.long), torch.zeros(n))
        q_signs, r_signs = self.signatures(query), self.signatures(reference)
        total_bits = q_signs.shape[1]
        agree = (q_signs.float() * 2 - 1) @ (r_signs.float() * 2 - 1).T  # bits - 2 * hamming
        hamming = ((total_bits - agree) / 2).round().long()  # [N, M]
        q_keys, r_keys = self._bucket_keys(q_signs), self._bucket_keys(r_signs)
        collide = torch.zeros(n, m, dtype=torch.bool)
        for t in range(self.config.num_tables):
            collide |= q_keys[:, t, None] == r_keys[None, :, t]
        distance = (torch.arange(n)[:, None] - torch.arange(m)[None, :]).abs()
        cost = hamming * (n + m) + distance
        cost = cost.masked_fill(~collide, torch.iinfo(torch.long).max)
        best = cost.argmin(dim=1)
        rows = torch.arange(n)
        similarity = torch.cos(math.pi * hamming[rows, best].float() / total_bits)
        found = collide[rows, best] & (similarity >= self.config.min_similarity)
        return TokenMatch(torch.where(found, best, torch.full_like(best, -1)), similarity)
