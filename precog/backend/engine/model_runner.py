"""Turn a scheduled batch into flat model inputs, write imported KV (prefixes, semantic reuse), and run
the model.

A sequence whose KV was compressed keeps logical positions (RoPE of token i is at position i) while
its cache holds num_evicted fewer tokens: new tokens go to cache index i - num_evicted.
"""

from __future__ import annotations

import torch

from precog.backend.engine.kv_cache import KVCache
from precog.backend.engine.lowrank_cache import LowRankState, plan_lowrank
from precog.backend.engine.scheduler import ScheduledBatch
from precog.backend.engine.sequence import Sequence
from precog.backend.layers.attention import AttentionBackend, AttentionMetadata
from precog.backend.layers.capture import HiddenCapture
from precog.backend.layers.paged_attention import plan_attention
from precog.backend.model.llama import LlamaModel
from precog.backend.reuse import reuse_prefill
from precog.backend.sparse import SparseAttention


class ModelRunner:
    def __init__(
        self,
        model: LlamaModel,
        kv_cache: KVCache,
        attention_backend: AttentionBackend,
        sparse: SparseAttention | None = None,
    ) -> None:
        self.model = model
        self.kv_cache = kv_cache
        self.attention_backend: AttentionBackend = attention_backend
        self.sparse = sparse

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> tuple[list[Sequence], torch.Tensor]:
        """Compute the batch; return the sequences that reached their last token, and [S, vocab] logits."""
        for seq, start, end in batch.imports:
            self._import(seq, start, end)
        input_ids, positions, slots, logit_rows, sampled = [], [], [], [], []
        context_lens, row = [], 0
        lowrank_rows: list[tuple[int, list[int], int, LowRankState]] = []
        head_masks: list[tuple[int, list[torch.Tensor]]] = []  # (decode row, per-layer [KVH, n] valid)
        capture = HiddenCapture()
        for seq, n in zip(batch.seqs, batch.num_new, strict=True):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
            input_ids.extend(seq.token_ids[start:end])
            positions.append(torch.arange(start, end))
            slots.append(self.kv_cache.slots(seq.block_table, start - seq.num_evicted, end - seq.num_evicted))
            context_lens.append(end - seq.num_evicted)
            if seq.captures_hidden:
                if not seq.prompt_hidden:
                    seq.prompt_hidden = [[] for _ in self.kv_cache.layers]
                capture.spans.append((seq.prompt_hidden, row, row + n))
            if n == 1 and seq.kv_head_valid is not None:  # its row among the step's decode rows
                head_masks.append(
                    (sum(m == 1 for m in batch.num_new[: len(context_lens) - 1]), seq.kv_head_valid)
                )
            if seq.lowrank is not None:
                if n != 1:
                    raise RuntimeError(f"{seq.request_id}: low-rank KV is only read by single-token decodes")
                lowrank_rows.append((row, seq.block_table, end - seq.num_evicted, seq.lowrank))
            if seq.thinkv is not None and end > seq.num_prompt_tokens:  # ThinKV types generated thoughts
                first = max(start, seq.num_prompt_tokens)
                hidden = seq.thinkv.capture(first, len(self.kv_cache.layers))
                capture.spans.append((hidden, row + first - start, row + n))
            row += n
            if end == seq.num_tokens and seq.prompt_complete:
                logit_rows.append(row - 1)
                sampled.append(seq)
        plan = plan_attention(
            [seq.block_table for seq in batch.seqs],
            list(batch.num_new),
            context_lens,
            self.kv_cache.block_size,
        )
        meta = AttentionMetadata(
            positions=torch.cat(positions),
            slot_mapping=torch.cat(slots),
            plan=plan,
            logit_rows=torch.tensor(logit_rows, dtype=torch.long),
            backend=self.attention_backend,
            capture=capture if capture.spans else None,
            layer_attention=self.sparse,
            lowrank=plan_lowrank(lowrank_rows),
            head_bias=head_bias(head_masks, plan.decode_slots.shape, len(self.kv_cache.layers)),
        )
        logits = self.model(torch.tensor(input_ids), self.kv_cache.layers, meta)
        return sampled, logits

    def _import(self, seq: Sequence, start: int, end: int) -> None:
        """Write positions [start, end) of seq's KV before the step: from its KV prefix, or computed by
        the semantic-reuse prefill of its first `end` tokens (precog.backend.reuse)."""
        reuse, blob = seq.request.kv_reuse, seq.request.kv_prefix
        if reuse is not None:
            result = reuse_prefill(self.model, seq.token_ids[:end], reuse)
            reuse.stats = result.stats
            self.kv_cache.write(seq.block_table, start, end, result.keys, result.values)
        elif blob is not None:
            self.kv_cache.write(seq.block_table, start, end, blob.keys, blob.values)
        else:
            return
        if self.sparse is not None:
            self.sparse.rewritten(seq.block_table, self.kv_cache.layers)


def head_bias(
    masks: list[tuple[int, list[torch.Tensor]]], decode_shape: torch.Size, num_layers: int
) -> list[torch.Tensor] | None:
    """Per layer [b, KVH, 1, T] decode bias: -inf where a head-adaptive sequence's head holds no token."""
    if not masks:
        return None
    b, width = decode_shape
    kvh = masks[0][1][0].shape[0]
    biases = [torch.zeros(b, kvh, 1, width) for _ in range(num_layers)]
    for row, valid in masks:
        for bias, layer_valid in zip(biases, valid, strict=True):
            n = layer_valid.shape[1]
            bias[row, :, 0, :n].masked_fill_(~layer_valid, float("-inf"))
    return biases
