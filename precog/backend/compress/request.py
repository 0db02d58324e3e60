"""What a request asks for: which press, how much to evict, and which token ranges to protect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from precog.backend.compress.base import ScorerPress
from precog.backend.compress.expected_attention import ExpectedAttentionPress
from precog.backend.compress.knorm import KnormPress
from precog.backend.compress.random_press import RandomPress
from precog.backend.compress.snapkv import SnapKVPress
from precog.backend.compress.streaming_llm import StreamingLLMPress

CompressionMethod = Literal[
    "none", "streaming_llm", "knorm", "snapkv", "random", "expected_attention", "ojakv", "thinkv"
]

PRESSES: dict[str, type[ScorerPress]] = {
    "streaming_llm": StreamingLLMPress,
    "knorm": KnormPress,
    "snapkv": SnapKVPress,
    "random": RandomPress,
    "expected_attention": ExpectedAttentionPress,
}
# Methods the engine runs itself rather than as a token-scoring press.
OJAKV = "ojakv"  # middle tokens to low-rank coefficients; ratio: the share of their KV bytes removed
# Decode-time methods that work on the generated tokens as they come rather than on the prompt.
DECODE_METHODS: tuple[str, ...] = ("thinkv",)
METHODS: tuple[str, ...] = ("none", *PRESSES, OJAKV, *DECODE_METHODS)


@dataclass(frozen=True, slots=True)
class KVCompression:
    """`kv_compression: {method, ratio}` of a request: after the prompt's prefill, evict `ratio` of its
    cached tokens with `method` ("none" turns a server default off). `protected` holds [start, end)
    token ranges (system prompt, marked instructions) that are always kept. With `decode_interval`
    N > 0 the press runs again every N decode tokens over everything cached, so the cache keeps holding
    about (1 - ratio) of all the sequence's tokens while it generates. For "ojakv", `ratio` is the
    share of the middle tokens' KV bytes removed by storing them at rank round(head_dim * (1 - ratio)),
    and its decode schedule is its own (decode_interval must be 0).

    "thinkv" works on the generated reasoning instead (precog/backend/compress/thinkv): the prompt is kept,
    and `ratio` is the share of the generated tokens' KV it evicts; the tokens it keeps are quantised
    by thought type (ratio 0: segmented and typed, KV untouched).

    `head_adaptive` (token-scoring presses, after the prefill only) lets the KV heads of a layer share
    its budget unevenly (see ScorerPress.select_head_adaptive); a head's unused slots are masked."""

    method: str
    ratio: float = 0.5
    protected: tuple[tuple[int, int], ...] = ()
    decode_interval: int = 0
    head_adaptive: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the bad field, so a server can answer 400 with the message."""
        if self.method not in METHODS:
            choices = ", ".join(METHODS)
            raise ValueError(f"kv_compression method must be one of {choices}; got {self.method!r}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"kv_compression ratio must be in [0, 1), got {self.ratio}")
        if self.decode_interval < 0:
            raise ValueError(f"kv_compression decode_interval must be >= 0, got {self.decode_interval}")
        if self.method in DECODE_METHODS and self.decode_interval:
            raise ValueError(
                f"kv_compression decode_interval must be 0 for {self.method} (it runs every thought)"
            )
        if self.method == OJAKV and self.decode_interval:
            raise ValueError("kv_compression decode_interval must be 0 for ojakv (its window slides itself)")
        if self.head_adaptive and (self.method not in PRESSES or self.decode_interval):
            raise ValueError("kv_compression head_adaptive needs a token-scoring press and decode_interval 0")
        for start, end in self.protected:
            if not 0 <= start < end:
                raise ValueError(f"kv_compression protected range [{start}, {end}) is empty or negative")

    @property
    def active(self) -> bool:
        return self.method != "none"

    @property
    def after_prefill(self) -> bool:
        """Whether the compactor runs this method after the prefill (all but "none" and decode-time ones)."""
        return self.active and self.method not in DECODE_METHODS

    def press(self) -> ScorerPress:
        if self.method not in PRESSES:
            raise ValueError(f"kv_compression method {self.method!r} has no press")
        return PRESSES[self.method](compression_ratio=self.ratio)
