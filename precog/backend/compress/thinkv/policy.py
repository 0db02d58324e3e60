"""What ThinKV keeps and at which precision: bit widths per thought type, and progressive eviction.

Think-before-you-quantise (TBQ): a thought's KV is quantised once the thought closes, at a width set
by its type (keys per channel, values per token: quantise.py); the prompt gets `prompt_bits`.
Think-before-you-evict (TBE): when the generated tokens still cached exceed the budget, tokens go
from the least important thoughts first (T, then E, then R; oldest first within a type),
progressively: each thought of a type is halved, then quartered, then cut to `min_keep`
(transitions to nothing) before the next type is touched; inside a thought the tokens the recent
queries attended least go first. Eviction runs when a transition closes, or whenever the excess
exceeds max_len tokens. The paper's exact widths and schedule are not public; these defaults follow
its description (more bits for reasoning, 2 bits for the rest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from precog.backend.compress.thinkv.classify import IMPORTANCE, ThoughtKind

FULL_BITS = 32  # the paged cache's float32
_QUANT_BITS = (2, 4, 8)
_PASSES = (0.5, 0.25, 0.0)


@dataclass(slots=True)
class Thought:
    """Generated positions [start, end), their type and sparsity, and the positions still cached."""

    start: int
    end: int
    kind: ThoughtKind
    sparsity: float
    kept: list[int] = field(default_factory=list)
    visible: float = 0.0  # keys its queries could see, on average


@dataclass(frozen=True, slots=True)
class ThinKVPolicy:
    """ThinKV's knobs. `uniform_bits` turns it into the uniform-quantisation baseline: every token at
    that width once its thought closes (the prompt at once), no classification, no eviction."""

    reasoning_bits: int = 4
    execution_bits: int = 2
    transition_bits: int = 2
    prompt_bits: int = 8
    uniform_bits: int | None = None
    group_size: int = 32
    keys_per_channel: bool = True
    min_len: int = 6
    max_len: int = 32
    # On length-corrected sparsity (classify.py); fitted by bench/thinkv_bench.py on SmolLM2-135M.
    thresholds: tuple[float, float] = (0.9218, 0.9314)
    length_slope: float = -0.0158
    attention_mass: float = 0.9
    num_layers_sampled: int = 3
    min_keep: int = 2

    def validate(self) -> None:
        widths = (self.reasoning_bits, self.execution_bits, self.transition_bits, self.prompt_bits)
        for bits in (*widths, *((self.uniform_bits,) if self.uniform_bits is not None else ())):
            if bits not in (*_QUANT_BITS, FULL_BITS):
                raise ValueError(f"ThinKV bit widths must be 2, 4, 8 or 32, got {bits}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"ThinKV needs 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        if not 0.0 <= self.thresholds[0] <= self.thresholds[1] <= 1.0:
            raise ValueError(f"ThinKV thresholds must be ordered within [0, 1], got {self.thresholds}")
        if self.num_layers_sampled < 1 or self.min_keep < 0:
            raise ValueError("ThinKV needs at least one sampled layer and min_keep >= 0")

    def bits_for(self, kind: ThoughtKind) -> int:
        if self.uniform_bits is not None:
            return self.uniform_bits
        return {
            ThoughtKind.REASONING: self.reasoning_bits,
            ThoughtKind.EXECUTION: self.execution_bits,
            ThoughtKind.TRANSITION: self.transition_bits,
        }[kind]

    @property
    def prompt_width(self) -> int:
        return self.uniform_bits if self.uniform_bits is not None else self.prompt_bits


def token_bytes(bits: int, num_layers: int, num_kv_heads: int, head_dim: int, group_size: int) -> int:
    """Bytes one token's K and V take across layers: float32, or packed codes plus a float16 scale and
    zero per group (exactly precog.kernels.quant.QuantizedTensor.nbytes)."""
    per_head = head_dim * 4 if bits == FULL_BITS else head_dim * bits // 8 + head_dim // group_size * 2 * 2
    return 2 * num_layers * num_kv_heads * per_head


def generated_budget(num_generated: int, ratio: float) -> int:
    """Generated tokens a sequence may keep cached: the (1 - ratio) share, rounded up."""
    return math.ceil(num_generated * (1.0 - ratio))


def plan_eviction(
    thoughts: list[Thought], excess: int, scores: Mapping[int, float], min_keep: int
) -> list[int]:
    """Positions to evict (at most `excess`) from closed thoughts, least important thoughts first.

    Thoughts' `kept` lists are updated. Fewer than `excess` come back only when every thought is down
    to its floor (min_keep tokens; transitions none).
    """
    evicted: list[int] = []
    order = sorted(thoughts, key=lambda t: (IMPORTANCE[t.kind], t.start))
    kinds = sorted({t.kind for t in thoughts}, key=IMPORTANCE.__getitem__)
    for kind in kinds:
        for share in _PASSES:
            for thought in (t for t in order if t.kind is kind):
                if len(evicted) >= excess:
                    return evicted
                floor = 0 if kind is ThoughtKind.TRANSITION and share == 0.0 else min_keep
                target = max(math.ceil(share * (thought.end - thought.start)), floor)
                drop = min(len(thought.kept) - target, excess - len(evicted))
                if drop <= 0:
                    continue
                ranked = sorted(thought.kept, key=lambda p: (scores.get(p, 0.0), p))
                gone = set(ranked[:drop])
                evicted.extend(sorted(gone))
                thought.kept = [p for p in thought.kept if p not in gone]
    return evicted
