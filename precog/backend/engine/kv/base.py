"""The seam between the engine and a KV method: one interface, one state slot on each sequence.

Modelled on kvpress (a method is an object with hooks, variants are wrappers around it) and on
nano-vllm's short step: the engine knows no method by name. It asks the registry for the policy of a
request's `kv_compression`, keeps what `start` returns in `Sequence.kv_state`, lets the policy add
to each step's attention (`contribute`) and calls `after_step` once per sampled sequence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from transformers import PreTrainedTokenizerBase

from precog.backend.compress import KVCompression
from precog.backend.engine.block_manager import BlockManager
from precog.backend.engine.kv.lowrank_cache import LowRankRow
from precog.backend.engine.kv_cache import KVCache
from precog.backend.layers.capture import HiddenCapture
from precog.backend.model.llama import LlamaModel

if TYPE_CHECKING:
    from precog.backend.engine.sequence import Sequence


@dataclass(slots=True)
class KVCounters:
    """Engine-wide totals the policies add to (EngineStats reports them)."""

    compressed_requests: int = 0
    tokens_evicted: int = 0


@dataclass(frozen=True, slots=True)
class EngineParts:
    """What a policy works on: the model, the paged cache and its blocks, the tokenizer, the model's
    directory (for calibration files), and the shared counters."""

    model: LlamaModel
    kv_cache: KVCache
    block_manager: BlockManager
    tokenizer: PreTrainedTokenizerBase
    model_dir: Path
    counters: KVCounters


@dataclass(frozen=True, slots=True)
class RowSpan:
    """Where one sequence sits in a step: flat rows [row, row + end - start) compute positions
    [start, end); `decode_index` is its row among the step's single-token decodes (when end - start == 1)."""

    row: int
    start: int
    end: int
    decode_index: int

    @property
    def num_new(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class HeadMask:
    """A head-adaptive sequence's decode row and, per layer, [KVH, n] whether cache index i holds a token
    for that head."""

    decode_index: int
    valid: list[torch.Tensor]


@dataclass(slots=True)
class AttentionExtras:
    """What the policies of one step's sequences add to its attention: rows whose attention inputs are
    kept, decode rows that also read low-rank pages, and per-head masks."""

    capture: HiddenCapture = field(default_factory=HiddenCapture)
    lowrank_rows: list[LowRankRow] = field(default_factory=list)
    head_masks: list[HeadMask] = field(default_factory=list)


@dataclass(eq=False)
class KVState:
    """A sequence's slot for its policy: the policy itself, the request's option, and (in subclasses)
    what the method tracks."""

    policy: KVPolicy
    compression: KVCompression

    def reset(self) -> None:
        """After preemption every token is recomputed: forget what the method did to the old blocks."""

    def release_side_blocks(self) -> list[int]:
        """Blocks the method holds outside the sequence's block table (handed back with it)."""
        return []


class KVPolicy(ABC):
    """One KV method. `dense_only(compression)` names the option that sparse attention cannot serve
    (None: any attention); the other hooks run on the engine's stepping thread."""

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts
        self.model = parts.model
        self.kv_cache = parts.kv_cache
        self.block_manager = parts.block_manager
        self.counters = parts.counters

    def dense_only(self, compression: KVCompression) -> str | None:
        return None

    @abstractmethod
    def start(self, seq: Sequence, compression: KVCompression) -> KVState:
        """The state of a sequence admitted with this method."""

    @abstractmethod
    def contribute(self, seq: Sequence, span: RowSpan, extras: AttentionExtras) -> None:
        """Add what seq's rows of the coming step need from attention."""

    @abstractmethod
    def after_step(self, seq: Sequence) -> bool:
        """Run after the step that computed seq's latest token; True when cached KV was rewritten in
        place (sparse attention must summarise those pages again)."""


StateT = TypeVar("StateT", bound=KVState)


def state_of(seq: Sequence, kind: type[StateT]) -> StateT:
    """seq's KV state, which the calling policy created (a mismatch is a bug, not a request error)."""
    state = seq.kv_state
    if not isinstance(state, kind):
        raise TypeError(f"{seq.request_id}: KV state {type(state).__name__}, expected {kind.__name__}")
    return state
