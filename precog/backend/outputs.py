"""What the engine hands back: finished completions, streamed token events, and its own counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The chosen token's logprob and the `logprobs` most likely alternatives at that step."""

    token_id: int
    token: str
    logprob: float
    top: list[TopLogprob]


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token of a streamed request.

    `text` is the new text this token makes final; it can be empty (an incomplete UTF-8 character, or
    text held back because it may be the start of a stop string) and is cut before a matched stop
    string. `finish_reason` is set on the request's last event only.
    """

    request_id: str
    token_id: int
    text: str
    logprob: TokenLogprob | None
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished request: its generated tokens, its text (cut at a stop string) and why it ended."""

    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: list[TokenLogprob] | None
    cached_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of the engine's queues, KV blocks and counters (cumulative since start)."""

    waiting: int
    running: int
    kv_blocks_used: int
    kv_blocks_free: int
    kv_blocks_total: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    prompt_tokens: int
    generation_tokens: int
    preemptions: int
    kv_compressed_requests: int = 0  # requests whose prompt KV a press compacted
    kv_tokens_evicted: int = 0  # cached tokens those presses evicted

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0
