"""Token-scoring presses in the engine: run the press on a sequence's cached KV and give the evicted
memory back.

Per layer the press picks n_kept tokens for every KV head (the same count everywhere, since one block
table serves all layers and heads, but each layer and head its own tokens). The kept K/V are gathered
to cache indices 0..n_kept-1 of the sequence's own blocks, in their original order, and the blocks
past n_kept are freed. Keys keep the RoPE rotation of their original positions, and the sequence keeps
logical positions for the tokens that follow, so attention over the compacted cache stays correct.
The logical position of every cached token is tracked per layer and head, so protected positions stay
protected in later (decode-time) compactions.

When and how a press runs is a `Compaction`: once after the prefill, the same count for every head.
Decode-time rounds (`DecodeRounds`) and head-adaptive budgets (`HeadAdaptive`) wrap it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import cast

import torch
import torch.nn.functional as F

from precog.backend.compress import KVCompression, LayerInputs, ScorerPress
from precog.backend.engine.kv.base import AttentionExtras, HeadMask, KVPolicy, KVState, RowSpan, state_of
from precog.backend.engine.sequence import Sequence
from precog.backend.model.llama import SelfAttention

log = logging.getLogger(__name__)
HIDDEN_WINDOW = 256  # decode-time compactions score with the attention inputs of the latest positions


def protected_mask(num_tokens: int, compression: KVCompression) -> torch.Tensor:
    """[T] bool: the positions compression must keep."""
    mask = torch.zeros(num_tokens, dtype=torch.bool)
    for start, end in compression.protected:
        mask[start : min(end, num_tokens)] = True
    return mask


class Compaction:
    """The plain schedule: the press runs once, right after the prefill, and every head of a layer keeps
    the same number of tokens."""

    def __init__(self, press: ScorerPress) -> None:
        self.press = press

    def dense_only(self) -> str | None:
        return None

    def due(self, state: PressState, num_computed: int) -> bool:
        return not state.compressed

    def captures(self, state: PressState) -> bool:
        """Whether the model runner keeps seq's attention inputs for a coming compaction."""
        return not state.compressed

    def round_press(self, num_cached: int, length: int, first: bool) -> ScorerPress:
        return self.press

    def scoring_hidden(self, hidden: torch.Tensor, first: bool) -> torch.Tensor:
        return hidden

    def kept_hidden(self, hidden: torch.Tensor) -> list[list[torch.Tensor]]:
        """What of a layer's attention inputs to keep after a compaction (for the next one)."""
        return []

    def select(
        self, press: ScorerPress, inputs: LayerInputs, protected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[KVH, n] kept cache indices, and [KVH, n] whether each is a token (None: all are)."""
        return press.select(inputs, protected), None


class CompactionWrapper(Compaction):
    """A Compaction that changes one thing of the one it wraps."""

    def __init__(self, inner: Compaction) -> None:
        super().__init__(inner.press)
        self.inner = inner

    def dense_only(self) -> str | None:
        return self.inner.dense_only()

    def due(self, state: PressState, num_computed: int) -> bool:
        return self.inner.due(state, num_computed)

    def captures(self, state: PressState) -> bool:
        return self.inner.captures(state)

    def round_press(self, num_cached: int, length: int, first: bool) -> ScorerPress:
        return self.inner.round_press(num_cached, length, first)

    def scoring_hidden(self, hidden: torch.Tensor, first: bool) -> torch.Tensor:
        return self.inner.scoring_hidden(hidden, first)

    def kept_hidden(self, hidden: torch.Tensor) -> list[list[torch.Tensor]]:
        return self.inner.kept_hidden(hidden)

    def select(
        self, press: ScorerPress, inputs: LayerInputs, protected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.inner.select(press, inputs, protected)


class DecodeRounds(CompactionWrapper):
    """Run the press again every `interval` computed tokens, over everything cached, down to (1 - ratio)
    of all tokens so far (never fewer than the protected ones), scored with the latest positions."""

    def __init__(self, inner: Compaction, interval: int) -> None:
        super().__init__(inner)
        self.interval = interval

    def due(self, state: PressState, num_computed: int) -> bool:
        return self.inner.due(state, num_computed) or num_computed - state.compressed_at >= self.interval

    def captures(self, state: PressState) -> bool:
        return True

    def round_press(self, num_cached: int, length: int, first: bool) -> ScorerPress:
        press = self.inner.round_press(num_cached, length, first)
        if first:
            return press
        target = press.num_kept(length)
        return replace(press, compression_ratio=max(0.0, 1.0 - (target + 0.5) / num_cached))

    def scoring_hidden(self, hidden: torch.Tensor, first: bool) -> torch.Tensor:
        return hidden if first else hidden[-HIDDEN_WINDOW:]

    def kept_hidden(self, hidden: torch.Tensor) -> list[list[torch.Tensor]]:
        return [[hidden[-HIDDEN_WINDOW:]]]


class HeadAdaptive(CompactionWrapper):
    """Heads of a layer share its budget unevenly (ScorerPress.select_head_adaptive); a head's unused
    slots are masked in decode attention, which the sparse kernels do not take."""

    def dense_only(self) -> str | None:
        return "kv_compression head_adaptive"

    def select(
        self, press: ScorerPress, inputs: LayerInputs, protected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        kept, counts = press.select_head_adaptive(inputs, protected)
        return kept, torch.arange(kept.shape[1])[None, :] < counts[:, None]


def compaction_for(compression: KVCompression) -> Compaction:
    compaction = Compaction(compression.press())
    if compression.head_adaptive:
        compaction = HeadAdaptive(compaction)
    if compression.decode_interval:
        compaction = DecodeRounds(compaction, compression.decode_interval)
    return compaction


@dataclass(eq=False)
class PressState(KVState):
    """compressed: whether a compaction ran, compressed_at: the computed tokens at the last one;
    prompt_hidden: per layer, the attention inputs the next one scores with; kv_positions[layer]
    [KVH, n]: the logical position of each cached token (each head keeps its own); kv_head_valid
    (head-adaptive): per layer [KVH, n] whether cache index i holds a token for that head."""

    compaction: Compaction
    compressed: bool = False
    compressed_at: int = 0
    prompt_hidden: list[list[torch.Tensor]] = field(default_factory=list)
    kv_positions: list[torch.Tensor] | None = None
    kv_head_valid: list[torch.Tensor] | None = None

    def reset(self) -> None:
        self.compressed, self.compressed_at, self.prompt_hidden = False, 0, []
        self.kv_positions = self.kv_head_valid = None


class PressPolicy(KVPolicy):
    """Every token-scoring press (precog.backend.compress.PRESSES) through one compactor."""

    def dense_only(self, compression: KVCompression) -> str | None:
        return compaction_for(compression).dense_only()

    def start(self, seq: Sequence, compression: KVCompression) -> KVState:
        return PressState(self, compression, compaction_for(compression))

    def contribute(self, seq: Sequence, span: RowSpan, extras: AttentionExtras) -> None:
        state = state_of(seq, PressState)
        if state.compaction.captures(state):
            if not state.prompt_hidden:
                state.prompt_hidden = [[] for _ in self.kv_cache.layers]
            extras.capture.spans.append((state.prompt_hidden, span.row, span.row + span.num_new))
        if span.num_new == 1 and state.kv_head_valid is not None:
            extras.head_masks.append(HeadMask(span.decode_index, state.kv_head_valid))

    def after_step(self, seq: Sequence) -> bool:
        state = state_of(seq, PressState)
        if not state.compaction.due(state, seq.num_computed_tokens):
            return False
        self.compress(seq, state)
        return True

    @torch.inference_mode()
    def compress(self, seq: Sequence, state: PressState) -> None:
        """Evict seq's low-scored cached tokens and free the blocks they held; called right after the
        step that computed seq's last token, whose attention inputs the model runner captured.

        After the prefill the press evicts `ratio` of the prompt; a later round evicts down to what its
        Compaction says."""
        compression, compaction = state.compression, state.compaction
        first = not state.compressed
        num_tokens, length = seq.num_cached_tokens, seq.num_computed_tokens
        press = compaction.round_press(num_tokens, length, first)
        state.compressed, state.compressed_at = True, length
        hidden_chunks = state.prompt_hidden
        state.prompt_hidden = []
        keys, values = self.kv_cache.read(seq.block_table, num_tokens)
        protected = protected_mask(length, compression)
        kept_index, kept_valid, layer_positions = [], [], []
        for i, (layer, k, v) in enumerate(zip(self.model.layers, keys, values, strict=True)):
            attention = cast(SelfAttention, layer.self_attn)
            q_size = attention.num_heads * attention.head_dim
            bias = attention.qkv_proj.bias
            hidden = torch.cat(hidden_chunks[i])
            state.prompt_hidden.extend(compaction.kept_hidden(hidden))
            positions = self._positions(state, i, k.shape[0], num_tokens, length)
            inputs = LayerInputs(
                keys=k,
                values=v,
                hidden=compaction.scoring_hidden(hidden, first),
                q_weight=attention.qkv_proj.weight[:q_size],
                q_bias=None if bias is None else bias[:q_size],
                cos=self.model.rope.cos,
                sin=self.model.rope.sin,
                num_heads=attention.num_heads,
                num_positions=length,
            )
            kept, valid = compaction.select(press, inputs, protected[positions])
            kept_index.append(kept)
            if valid is not None:
                kept_valid.append(valid)
            layer_positions.append(positions)
        num_kept = max(index.shape[1] for index in kept_index)
        kept_keys, kept_values, kept_positions = [], [], []
        for i, (k, v, positions) in enumerate(zip(keys, values, layer_positions, strict=True)):
            kept = F.pad(kept_index[i], (0, num_kept - kept_index[i].shape[1]))  # head-adaptive: masked
            index = kept[..., None].expand(-1, -1, k.shape[-1])
            kept_keys.append(k.gather(1, index))
            kept_values.append(v.gather(1, index))
            kept_positions.append(positions.gather(1, kept))
        state.kv_positions = kept_positions
        if kept_valid:
            state.kv_head_valid = [F.pad(valid, (0, num_kept - valid.shape[1])) for valid in kept_valid]
        self.kv_cache.write(seq.block_table, 0, num_kept, kept_keys, kept_values)
        before = len(seq.block_table)
        self.block_manager.truncate(seq, num_kept)
        seq.num_evicted += num_tokens - num_kept
        self.counters.compressed_requests += first
        self.counters.tokens_evicted += num_tokens - num_kept
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "kv compressed",
                extra={
                    "request_id": seq.request_id,
                    "method": compression.method,
                    "after": "prefill" if first else "decode",
                    "tokens": num_tokens,
                    "kept": num_kept,
                    "protected": compression.protected,
                    "protected_kept": protected_kept(protected, state),
                    "blocks_freed": before - len(seq.block_table),
                },
            )

    @staticmethod
    def _positions(
        state: PressState, layer: int, num_heads: int, num_tokens: int, length: int
    ) -> torch.Tensor:
        """[KVH, num_tokens] logical position of each cached token of one layer: those kept by the last
        compaction, then the tokens computed since, which sit at the end of the cache."""
        if state.kv_positions is None:
            return torch.arange(num_tokens).expand(num_heads, num_tokens)
        old = state.kv_positions[layer]
        new = torch.arange(length - (num_tokens - old.shape[1]), length).expand(num_heads, -1)
        return torch.cat([old, new], dim=1)


def protected_kept(protected: torch.Tensor, state: PressState) -> bool:
    """Whether every head of every layer still holds every protected position (for the debug line)."""
    positions = state.kv_positions or []
    valid = state.kv_head_valid or [torch.tensor(True)] * len(positions)
    num_protected = int(protected.sum())
    return all(
        bool(((protected[p] & v).sum(-1) == num_protected).all())
        for p, v in zip(positions, valid, strict=True)
    )
