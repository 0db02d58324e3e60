"""One request as the engine tracks it: its tokens, how many have KV in the cache, and its blocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING

import torch

from precog.backend.compress import KVCompression
from precog.backend.engine.detokenizer import IncrementalDetokenizer
from precog.backend.outputs import Completion, FinishReason, TokenEvent, TokenLogprob
from precog.backend.reuse import KVReuse
from precog.backend.sampling_params import SamplingParams
from precog.store import KVBlob

if TYPE_CHECKING:
    from precog.backend.engine.kv import KVState


class Status(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


@dataclass(slots=True)
class Request:
    """What a caller submits; `on_event` / `on_finish` run on the engine's stepping thread."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    kv_prefix: KVBlob | None = None
    on_event: Callable[[TokenEvent], None] | None = None
    on_finish: Callable[[Completion], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    on_kv: Callable[[KVBlob], None] | None = None  # gets the prompt's KV once its prefill is done
    compression: KVCompression | None = None  # None: the engine's default
    # Evaluation (teacher forcing): output tokens fed instead of the sampled ones, and a callback that
    # gets the raw logits [vocab] each sampled position produced.
    forced_token_ids: list[int] | None = None
    on_logits: Callable[[torch.Tensor], None] | None = None
    # Overlap (RServe): False while later parts of the prompt are still being produced (retrieved
    # documents, the rest of an upload). The ready prefix is prefilled meanwhile; nothing is sampled
    # until Engine.extend_prompt(..., final=True) completes the prompt.
    prompt_complete: bool = True
    # Semantic KV reuse: prefill approximately from a similar prompt's KV (precog.backend.reuse); None: off.
    kv_reuse: KVReuse | None = None


@dataclass(slots=True, eq=False)
class Sequence:
    request: Request
    detokenizer: IncrementalDetokenizer
    generator: torch.Generator | None
    token_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    cached_tokens: int | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    # What the request's KV method tracks (precog.backend.engine.kv; None: every token is kept), and how
    # many computed tokens left the blocks (positions stay logical: token i keeps RoPE position i, and
    # new tokens go to cache index i - num_evicted).
    kv_state: KVState | None = None
    num_evicted: int = 0

    def __post_init__(self) -> None:
        self.token_ids = list(self.request.prompt_token_ids)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.request.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_cached_tokens(self) -> int:
        """Tokens whose KV the blocks hold (fewer than those computed once compression evicted some)."""
        return self.num_computed_tokens - self.num_evicted

    @property
    def private_kv(self) -> bool:
        """Whether seq's blocks stay out of the prefix cache: compaction rewrites them in place, and a
        reuse prefill's KV is approximate, so neither may be served for a plain prefix."""
        return self.kv_state is not None or self.request.kv_reuse is not None

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def prompt_complete(self) -> bool:
        return self.request.prompt_complete

    def extend_prompt(self, token_ids: list[int], final: bool) -> None:
        """Append a newly ready part of the prompt (only before any output token exists)."""
        if self.prompt_complete:
            raise ValueError(f"the prompt of request {self.request_id!r} is already complete")
        self.request.prompt_token_ids.extend(token_ids)
        self.token_ids.extend(token_ids)
        self.request.prompt_complete = final

    def reset_for_recompute(self) -> None:
        """After preemption: the blocks are gone, every token (prompt and output) will be prefilled again."""
        self.status = Status.WAITING
        self.num_computed_tokens = 0
        self.block_table = []
        self.block_hashes = []
        self.num_evicted = 0
        if self.kv_state is not None:
            self.kv_state.reset()

    def completion(self) -> Completion:
        return Completion(
            request_id=self.request_id,
            prompt_token_ids=list(self.request.prompt_token_ids),
            token_ids=self.output_token_ids,
            text=self.detokenizer.text,
            finish_reason=self.finish_reason or "abort",
            logprobs=self.logprobs if self.params.logprobs is not None else None,
            cached_tokens=self.cached_tokens or 0,
        )
