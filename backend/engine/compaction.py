"""Run a sequence's KV-compression press after its prefill and give the evicted memory back.

Per layer the press picks n_kept tokens for every KV head (the same count everywhere, since one block
table serves all layers and heads, but each layer and head its own tokens). The kept K/V are gathered
to cache indices 0..n_kept-1 of the sequence's own blocks, in their original order, and the blocks
past n_kept are freed. Keys keep the RoPE rotation of their original positions, and the sequence keeps
logical positions for the tokens that follow, so attention over the compacted cache stays correct.
"""

from __future__ import annotations

import logging
from typing import cast

import torch

from backend.compress import KVCompression, LayerInputs
from backend.engine.block_manager import BlockManager
from backend.engine.kv_cache import KVCache
from backend.engine.sequence import Sequence
from backend.model.llama import LlamaModel, SelfAttention

log = logging.getLogger(__name__)


def protected_mask(num_tokens: int, compression: KVCompression) -> torch.Tensor:
    """[T] bool: the positions compression must keep."""
    mask = torch.zeros(num_tokens, dtype=torch.bool)
    for start, end in compression.protected:
        mask[start : min(end, num_tokens)] = True
    return mask


class KVCompactor:
    def __init__(self, model: LlamaModel, kv_cache: KVCache, block_manager: BlockManager) -> None:
        self.model = model
        self.kv_cache = kv_cache
        self.block_manager = block_manager
        self.compressed_requests = 0
        self.tokens_evicted = 0

    @torch.inference_mode()
    def compress(self, seq: Sequence) -> None:
        """Evict seq's low-scored cached tokens and free the blocks they held; call it right after the
        step that computed seq's last token, whose attention inputs the model runner captured."""
        compression = seq.compression
        if compression is None or seq.compressed:
            return
        seq.compressed = True
        hidden_chunks, seq.prompt_hidden = seq.prompt_hidden, []
        press = compression.press()
        num_tokens = seq.num_cached_tokens
        keys, values = self.kv_cache.read(seq.block_table, num_tokens)
        protected = protected_mask(num_tokens, compression)
        kept_keys, kept_values = [], []
        for i, (layer, k, v) in enumerate(zip(self.model.layers, keys, values, strict=True)):
            attention = cast(SelfAttention, layer.self_attn)
            q_size = attention.num_heads * attention.head_dim
            bias = attention.qkv_proj.bias
            inputs = LayerInputs(
                keys=k,
                values=v,
                hidden=torch.cat(hidden_chunks[i]),
                q_weight=attention.qkv_proj.weight[:q_size],
                q_bias=None if bias is None else bias[:q_size],
                cos=self.model.rope.cos,
                sin=self.model.rope.sin,
                num_heads=attention.num_heads,
            )
            index = press.select(inputs, protected)[..., None].expand(-1, -1, k.shape[-1])
            kept_keys.append(k.gather(1, index))
            kept_values.append(v.gather(1, index))
        num_kept = kept_keys[0].shape[1]
        self.kv_cache.write(seq.block_table, 0, num_kept, kept_keys, kept_values)
        before = len(seq.block_table)
        self.block_manager.truncate(seq, num_kept)
        seq.num_evicted += num_tokens - num_kept
        self.compressed_requests += 1
        self.tokens_evicted += num_tokens - num_kept
        log.debug(
            "kv compressed",
            extra={
                "request_id": seq.request_id,
                "method": compression.method,
                "tokens": num_tokens,
                "kept": num_kept,
                "blocks_freed": before - len(seq.block_table),
            },
        )
