"""Turn a scheduled batch into flat model inputs, write imported KV (prefixes, semantic reuse), and run
the model.

A sequence whose KV was compressed keeps logical positions (RoPE of token i is at position i) while
its cache holds num_evicted fewer tokens: new tokens go to cache index i - num_evicted.
"""

from __future__ import annotations

import torch

from precog.backend.engine.kv import AttentionExtras, HeadMask, RowSpan, plan_lowrank
from precog.backend.engine.kv_cache import KVCache
from precog.backend.engine.scheduler import ScheduledBatch
from precog.backend.engine.sequence import Sequence
from precog.backend.layers.attention import AttentionBackend, AttentionMetadata
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
        self.device = kv_cache.device

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> tuple[list[Sequence], torch.Tensor]:
        """Compute the batch; return the sequences that reached their last token, and [S, vocab] logits."""
        for kv_import in batch.imports:
            self._import(kv_import.seq, kv_import.start, kv_import.end)
        input_ids, positions, slots, logit_rows, sampled = [], [], [], [], []
        context_lens, row, decode_index = [], 0, 0
        extras = AttentionExtras()
        for seq, n in zip(batch.seqs, batch.num_new, strict=True):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
            input_ids.extend(seq.token_ids[start:end])
            positions.append(torch.arange(start, end))
            slots.append(self.kv_cache.slots(seq.block_table, start - seq.num_evicted, end - seq.num_evicted))
            context_lens.append(end - seq.num_evicted)
            if seq.kv_state is not None:
                seq.kv_state.policy.contribute(seq, RowSpan(row, start, end, decode_index), extras)
            row += n
            decode_index += n == 1
            if end == seq.num_tokens and seq.prompt_complete:
                logit_rows.append(row - 1)
                sampled.append(seq)
        plan = plan_attention(
            [seq.block_table for seq in batch.seqs],
            list(batch.num_new),
            context_lens,
            self.kv_cache.block_size,
        )
        device = self.device
        meta = AttentionMetadata(
            positions=torch.cat(positions).to(device, non_blocking=True),
            slot_mapping=torch.cat(slots).to(device, non_blocking=True),
            plan=plan.to(device),
            logit_rows=torch.tensor(logit_rows, dtype=torch.long).to(device, non_blocking=True),
            backend=self.attention_backend,
            capture=extras.capture if extras.capture.spans else None,
            layer_attention=self.sparse,
            lowrank=plan_lowrank(extras.lowrank_rows),
            head_bias=head_bias(
                extras.head_masks, plan.decode_slots.shape, len(self.kv_cache.layers), device
            ),
        )
        logits = self.model(torch.tensor(input_ids).to(device, non_blocking=True), self.kv_cache.layers, meta)
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
            self.sparse.rewritten(seq.block_table, self.kv_cache.plain_layers())


def head_bias(
    masks: list[HeadMask], decode_shape: torch.Size, num_layers: int, device: torch.device
) -> list[torch.Tensor] | None:
    """Per layer [b, KVH, 1, T] decode bias: -inf where a head-adaptive sequence's head holds no token."""
    if not masks:
        return None
    b, width = decode_shape
    kvh = masks[0].valid[0].shape[0]
    biases = [torch.zeros(b, kvh, 1, width) for _ in range(num_layers)]
    for mask in masks:
        for bias, layer_valid in zip(biases, mask.valid, strict=True):
            n = layer_valid.shape[1]
            bias[mask.decode_index, :, 0, :n].masked_fill_(~layer_valid, float("-inf"))
    return [bias.to(device, non_blocking=True) for bias in biases]
