"""What a request asks for: which press, how much to evict, and which token ranges to protect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.compress.base import ScorerPress
from backend.compress.expected_attention import ExpectedAttentionPress
from backend.compress.knorm import KnormPress
from backend.compress.random_press import RandomPress
from backend.compress.snapkv import SnapKVPress
from backend.compress.streaming_llm import StreamingLLMPress

CompressionMethod = Literal["none", "streaming_llm", "knorm", "snapkv", "random", "expected_attention"]

PRESSES: dict[str, type[ScorerPress]] = {
    "streaming_llm": StreamingLLMPress,
    "knorm": KnormPress,
    "snapkv": SnapKVPress,
    "random": RandomPress,
    "expected_attention": ExpectedAttentionPress,
}
METHODS: tuple[str, ...] = ("none", *PRESSES)


@dataclass(frozen=True, slots=True)
class KVCompression:
    """`kv_compression: {method, ratio}` of a request: after the prompt's prefill, evict `ratio` of its
    cached tokens with `method` ("none" turns a server default off). `protected` holds [start, end)
    token ranges (system prompt, marked instructions) that are always kept. With `decode_interval`
    N > 0 the press runs again every N decode tokens over everything cached, so the cache keeps holding
    about (1 - ratio) of all the sequence's tokens while it generates."""

    method: str
    ratio: float = 0.5
    protected: tuple[tuple[int, int], ...] = ()
    decode_interval: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the bad field, so a server can answer 400 with the message."""
        if self.method not in METHODS:
            choices = ", ".join(METHODS)
            raise ValueError(f"kv_compression method must be one of {choices}; got {self.method!r}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"kv_compression ratio must be in [0, 1), got {self.ratio}")
        if self.decode_interval < 0:
            raise ValueError(f"kv_compression decode_interval must be >= 0, got {self.decode_interval}")
        for start, end in self.protected:
            if not 0 <= start < end:
                raise ValueError(f"kv_compression protected range [{start}, {end}) is empty or negative")

    @property
    def active(self) -> bool:
        return self.method != "none"

    def press(self) -> ScorerPress:
        if not self.active:
            raise ValueError("kv_compression method 'none' has no press")
        return PRESSES[self.method](compression_ratio=self.ratio)
