"""Run ThinKV on a decoding sequence after each step: close thoughts, type them, quantise their KV in
place, evict from the least important ones when over budget, and give emptied blocks back.

Quantised thoughts stay in the float32 paged cache as their dequantised values (the attention kernels
read one dtype); the memory they would take as packed codes plus group scales is counted as their
effective bytes (ThinKVReport), while eviction frees real blocks. Evicted slots are reused in place:
the last cached tokens move into them, so the cache stays a dense prefix that every attention kernel
reads unchanged, and the emptied tail blocks return to the block manager. The paper's kernel instead
lets new tokens write into the holes; moving at most as many tokens as were evicted is our trade.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import torch

from precog.backend.compress import KVCompression
from precog.backend.compress.thinkv import (
    FULL_BITS,
    ThinKVPolicy,
    ThinKVReport,
    ThinKVState,
    Thought,
    ThoughtKind,
    attention_sparsity,
    attention_weights,
    classify,
    delimiter_ids,
    generated_budget,
    length_corrected,
    plan_eviction,
    quantise_channels,
    quantise_tokens,
    split_thoughts,
    token_bytes,
)
from precog.backend.engine.kv.base import (
    AttentionExtras,
    EngineParts,
    KVPolicy,
    KVState,
    RowSpan,
    state_of,
)
from precog.backend.engine.sequence import Sequence
from precog.backend.layers.kv_pages import plain_pages
from precog.backend.model.llama import SelfAttention
from precog.backend.model.rope import apply_rope

log = logging.getLogger(__name__)
REPORTS_KEPT = 256


@dataclass(eq=False)
class ThinKVSequence(KVState):
    """A sequence's ThinKV bookkeeping (precog.backend.compress.thinkv.ThinKVState)."""

    thinkv: ThinKVState

    def reset(self) -> None:
        self.thinkv.reset()


def thinkv_of(seq: Sequence) -> ThinKVState:
    return state_of(seq, ThinKVSequence).thinkv


class ThinKVRunner(KVPolicy):
    """Engine-side ThinKV. `policy` applies to sequences started after it is set (evaluation swaps it
    for the uniform-quantisation baseline); `report(request_id)` tells what happened to a request."""

    def __init__(self, parts: EngineParts, policy: ThinKVPolicy | None = None) -> None:
        super().__init__(parts)
        self.tokenizer = parts.tokenizer
        self.policy = policy or ThinKVPolicy()
        self._delimiters: frozenset[int] | None = None
        self._reports: OrderedDict[str, ThinKVReport] = OrderedDict()
        k_cache = self.kv_cache.layers[0][0]
        self._num_layers = len(self.kv_cache.layers)
        self._kv_heads, self._head_dim = int(k_cache.shape[2]), int(k_cache.shape[3])
        self._full_token_bytes = token_bytes(FULL_BITS, self._num_layers, self._kv_heads, self._head_dim, 1)

    @property
    def delimiters(self) -> frozenset[int]:
        if self._delimiters is None:
            vocab = range(len(self.tokenizer))
            self._delimiters = delimiter_ids((i, str(self.tokenizer.decode([i]))) for i in vocab)
        return self._delimiters

    def start(self, seq: Sequence, compression: KVCompression) -> KVState:
        self.policy.validate()
        state = ThinKVState(self.policy, compression.ratio, seq.num_prompt_tokens)
        self._reports[seq.request_id] = state.report
        while len(self._reports) > REPORTS_KEPT:
            self._reports.popitem(last=False)
        return ThinKVSequence(self, compression, state)

    def contribute(self, seq: Sequence, span: RowSpan, extras: AttentionExtras) -> None:
        """ThinKV types generated thoughts by their attention: keep the generated rows' inputs."""
        if span.end <= seq.num_prompt_tokens:
            return
        first = max(span.start, seq.num_prompt_tokens)
        hidden = thinkv_of(seq).capture(first, len(self.kv_cache.layers))
        extras.capture.spans.append((hidden, span.row + first - span.start, span.row + span.num_new))

    def report(self, request_id: str) -> ThinKVReport | None:
        return self._reports.get(request_id)

    def sampled_layers(self, policy: ThinKVPolicy) -> list[int]:
        """Evenly spread layers whose attention types the thoughts (the first and last are skipped)."""
        n = min(policy.num_layers_sampled, self._num_layers)
        return sorted({self._num_layers * (i + 1) // (n + 1) for i in range(n)})

    @torch.inference_mode()
    def after_step(self, seq: Sequence) -> bool:
        """Call after the step that computed seq's latest tokens (their attention inputs captured);
        True when it rewrote cached KV (quantised or moved tokens)."""
        state = thinkv_of(seq)
        policy = state.policy
        if not state.started:  # the prompt is complete now (it may have arrived in parts)
            state.num_prompt_tokens = state.open_start = seq.num_prompt_tokens
        state.track(seq.num_cached_tokens, seq.num_evicted, self._full_token_bytes)
        rewrote = False
        if not state.started:
            state.started = rewrote = True
            if state.compresses:
                self._quantise(
                    seq, list(range(min(state.num_prompt_tokens, len(state.positions)))), policy.prompt_width
                )
        closed, state.open_start = split_thoughts(
            seq.token_ids,
            state.open_start,
            seq.num_computed_tokens,
            self.delimiters,
            policy.min_len,
            policy.max_len,
        )
        transition = False
        layers = self.sampled_layers(policy)
        for start, end in closed:
            thought = self._classify(seq, start, end, layers)
            state.thoughts.append(thought)
            transition |= thought.kind is ThoughtKind.TRANSITION
            if state.compresses:
                index = {p: i for i, p in enumerate(state.positions)}
                self._quantise(seq, [index[p] for p in range(start, end)], policy.bits_for(thought.kind))
                rewrote = True
        state.drop_hidden(layers, state.open_start)
        if state.compresses and policy.uniform_bits is None and closed:
            self.evict(seq, transition)
        self._update_report(seq, state)
        return rewrote and state.compresses

    def _classify(self, seq: Sequence, start: int, end: int, layers: list[int]) -> Thought:
        state = thinkv_of(seq)
        kept = list(range(start, end))
        if state.policy.uniform_bits is not None:
            return Thought(start, end, ThoughtKind.REASONING, float("nan"), kept)
        query_pos = torch.arange(start, end)
        key_pos = torch.tensor(state.positions)
        slots = self.kv_cache.slots(seq.block_table, 0, len(state.positions))
        visible = (key_pos[None, :] <= query_pos[:, None]).sum(dim=-1)
        sparsities, attended = [], torch.zeros(len(state.positions))
        for layer in layers:
            attention = cast(SelfAttention, self.model.layers[layer].self_attn)
            q_size = attention.num_heads * attention.head_dim
            bias = attention.qkv_proj.bias
            rows = state.hidden_rows(layer, start, end)
            q = torch.nn.functional.linear(
                rows, attention.qkv_proj.weight[:q_size], None if bias is None else bias[:q_size]
            ).view(len(rows), attention.num_heads, attention.head_dim)
            cos_sin = self.model.rope.at(query_pos)
            q = apply_rope(q, cos_sin).transpose(0, 1)
            k_cache, _ = plain_pages(self.kv_cache.layers[layer])
            keys = k_cache.view(-1, *k_cache.shape[2:])[slots].transpose(0, 1)
            weights = attention_weights(q, keys, query_pos, key_pos)
            sparsities.append(attention_sparsity(weights, visible, state.policy.attention_mass).mean())
            attended += weights.mean(dim=(0, 1))
        attended /= len(layers)
        for index, position in enumerate(state.positions):
            score = float(attended[index])
            if score > state.scores.get(position, 0.0):
                state.scores[position] = score
        sparsity, seen = float(torch.stack(sparsities).mean()), float(visible.float().mean())
        corrected = length_corrected(sparsity, seen, state.policy.length_slope)
        return Thought(start, end, classify(corrected, state.policy.thresholds), sparsity, kept, seen)

    def _quantise(self, seq: Sequence, indices: list[int], bits: int) -> None:
        """Round the K/V at these cache indices to `bits` (group scales) and write them back."""
        state = thinkv_of(seq)
        if bits == FULL_BITS or not indices:
            return
        slots = self._slots(seq, indices)
        group = state.policy.group_size
        quantise_keys = quantise_channels if state.policy.keys_per_channel else quantise_tokens
        nbytes = 0
        for k_cache, v_cache in self.kv_cache.plain_layers():
            for cache, quantise in ((k_cache, quantise_keys), (v_cache, quantise_tokens)):
                flat = cache.view(-1, *cache.shape[2:])
                flat[slots], size = quantise(flat[slots], bits, group)
                nbytes += size
        for i in indices:
            state.bits[i] = bits
            state.nbytes[i] = nbytes / len(indices)

    def evict(self, seq: Sequence, transition: bool) -> None:
        """At a transition (or far over budget) evict down to the budget and free emptied blocks."""
        state = thinkv_of(seq)
        prompt = state.num_prompt_tokens
        budget = generated_budget(seq.num_computed_tokens - prompt, state.ratio)
        excess = len(state.positions) - prompt - budget
        if excess <= 0 or not (transition or excess > state.policy.max_len):
            return
        gone = plan_eviction(state.thoughts, excess, state.scores, state.policy.min_keep)
        if not gone:
            return
        index = {p: i for i, p in enumerate(state.positions)}
        evicted = sorted(index[p] for p in gone)
        n_cached = len(state.positions)
        n_kept = n_cached - len(evicted)
        holes = [i for i in evicted if i < n_kept]
        dropped = set(evicted)
        movers = [i for i in range(n_kept, n_cached) if i not in dropped]
        if holes:
            to, source = self._slots(seq, holes), self._slots(seq, movers)
            for k_cache, v_cache in self.kv_cache.plain_layers():
                for cache in (k_cache, v_cache):
                    flat = cache.view(-1, *cache.shape[2:])
                    flat[to] = flat[source]
            for hole, mover in zip(holes, movers, strict=True):
                state.positions[hole], state.bits[hole] = state.positions[mover], state.bits[mover]
                state.nbytes[hole] = state.nbytes[mover]
        del state.positions[n_kept:], state.bits[n_kept:], state.nbytes[n_kept:]
        for position in gone:
            state.scores.pop(position, None)
        before = len(seq.block_table)
        self.block_manager.truncate(seq, n_kept)
        seq.num_evicted += len(evicted)
        self.counters.tokens_evicted += len(evicted)
        state.report.tokens_evicted += len(evicted)
        log.debug(
            "thinkv evicted",
            extra={
                "request_id": seq.request_id,
                "tokens": len(evicted),
                "blocks_freed": before - len(seq.block_table),
            },
        )

    def _slots(self, seq: Sequence, indices: list[int]) -> torch.Tensor:
        index = torch.tensor(indices, dtype=torch.long)
        size = self.kv_cache.block_size
        return torch.tensor(seq.block_table, dtype=torch.long)[index // size] * size + index % size

    def _update_report(self, seq: Sequence, state: ThinKVState) -> None:
        report = state.report
        report.thoughts = [(t.start, t.end, t.kind.value, t.sparsity, t.visible) for t in state.thoughts]
        report.effective_bytes = round(sum(state.nbytes))
        report.peak_effective_bytes = max(report.peak_effective_bytes, report.effective_bytes)
        report.full_bytes = seq.num_computed_tokens * self._full_token_bytes
        report.blocks_held = len(seq.block_table)
