"""What a request brings to reuse: a reference KV blob plus how to match and recompute, and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from precog.backend.model.spec import ModelSpec
from precog.backend.reuse.lsh import LSHConfig
from precog.backend.reuse.schedule import RecomputeSchedule
from precog.store import KVBlob


@dataclass(slots=True)
class ReuseStats:
    """What one reuse prefill did: tokens, matched tokens, tokens computed per layer, and the match time."""

    num_tokens: int
    matched: int
    computed_per_layer: list[int]
    match_seconds: float

    @property
    def computed_share(self) -> float:
        """Token-layers computed, as a share of what a full prefill computes."""
        return sum(self.computed_per_layer) / max(1, self.num_tokens * len(self.computed_per_layer))


@dataclass(slots=True)
class KVReuse:
    """A request's `kv_reuse` option: prefill approximately from a similar prompt's KV (SemShareKV).

    `reference` is any stored prompt's KV blob for this model; its tokens need not be a prefix of the
    prompt. The engine fills `stats` once the prefill ran. The prefill's KV is approximate, so such a
    request neither reads nor fills the prefix cache.
    """

    reference: KVBlob
    schedule: RecomputeSchedule = field(default_factory=RecomputeSchedule)
    lsh: LSHConfig = field(default_factory=LSHConfig)
    stats: ReuseStats | None = None


def check_reference(blob: KVBlob, spec: ModelSpec) -> None:
    """Raise ValueError (client terms) unless `blob` has this model's layers, heads, head size and RoPE."""
    if not blob.token_ids:
        raise ValueError("the reference KV blob holds no tokens")
    expected = (spec.num_kv_heads, len(blob.token_ids), spec.head_dim)
    if blob.num_layers != spec.num_layers or any(tuple(k.shape) != expected for k in blob.keys):
        raise ValueError(
            "the reference KV blob's shape does not match this model "
            f"({spec.num_layers} layers of {expected})"
        )
    if any(not 0 <= t < spec.vocab_size for t in blob.token_ids):
        raise ValueError(f"the reference KV blob's token ids must be in [0, {spec.vocab_size})")
    theta = blob.rope.get("theta")
    if theta is not None and float(theta) != spec.rope_theta:
        raise ValueError(
            f"the reference KV blob was rotated with RoPE theta {theta}, this model uses {spec.rope_theta}"
        )
