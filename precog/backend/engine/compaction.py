"""Run a sequence's KV-compression press and give the evicted memory back: after its prefill, and with
`decode_interval` again every N decode tokens.

Per layer the press picks n_kept tokens for every KV head (the same count everywhere, since one block
table serves all layers and heads, but each layer and head its own tokens). The kept K/V are gathered
to cache indices 0..n_kept-1 of the sequence's own blocks, in their original order, and the blocks
past n_kept are freed. Keys keep the RoPE rotation of their original positions, and the sequence keeps
logical positions for the tokens that follow, so attention over the compacted cache stays correct.
The logical position of every cached token is tracked per layer and head, so protected positions stay
protected in later (decode-time) compactions.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import cast

import torch
import torch.nn.functional as F

from precog.backend.compress import OJAKV, KVCompression, LayerInputs
from precog.backend.engine.block_manager import BlockManager
from precog.backend.engine.kv_cache import KVCache
from precog.backend.engine.ojakv import OjaKV
from precog.backend.engine.sequence import Sequence
from precog.backend.model.llama import LlamaModel, SelfAttention

log = logging.getLogger(__name__)


def protected_mask(num_tokens: int, compression: KVCompression) -> torch.Tensor:
    """[T] bool: the positions compression must keep."""
    mask = torch.zeros(num_tokens, dtype=torch.bool)
    for start, end in compression.protected:
        mask[start : min(end, num_tokens)] = True
    return mask


HIDDEN_WINDOW = 256  # decode-time compactions score with the attention inputs of the latest positions


class KVCompactor:
    def __init__(
        self, model: LlamaModel, kv_cache: KVCache, block_manager: BlockManager, ojakv: OjaKV
    ) -> None:
        self.model = model
        self.kv_cache = kv_cache
        self.block_manager = block_manager
        self.ojakv = ojakv
        self.compressed_requests = 0
        self.tokens_evicted = 0

    @torch.inference_mode()
    def compress(self, seq: Sequence) -> None:
        """Evict seq's low-scored cached tokens and free the blocks they held; call it right after the
        step that computed seq's last token, whose attention inputs the model runner captured.

        After the prefill the press evicts `ratio` of the prompt; a decode-time compaction evicts down
        to (1 - ratio) of every token computed so far (never fewer than the protected ones)."""
        compression = seq.compression
        if compression is None or not seq.needs_compression:
            return
        if compression.method == OJAKV:
            seq.compressed, seq.prompt_hidden = True, []
            self.ojakv.compress(seq, compression)
            self.compressed_requests += 1
            return
        first = not seq.compressed
        press = compression.press()
        num_tokens, length = seq.num_cached_tokens, seq.num_computed_tokens
        if not first:
            target = press.num_kept(length)
            press = replace(press, compression_ratio=max(0.0, 1.0 - (target + 0.5) / num_tokens))
        seq.compressed, seq.compressed_at = True, length
        hidden_chunks = seq.prompt_hidden
        seq.prompt_hidden = []
        keys, values = self.kv_cache.read(seq.block_table, num_tokens)
        protected = protected_mask(length, compression)
        kept_index, kept_valid, layer_positions = [], [], []
        for i, (layer, k, v) in enumerate(zip(self.model.layers, keys, values, strict=True)):
            attention = cast(SelfAttention, layer.self_attn)
            q_size = attention.num_heads * attention.head_dim
            bias = attention.qkv_proj.bias
            hidden = torch.cat(hidden_chunks[i])
            if compression.decode_interval:
                seq.prompt_hidden.append([hidden[-HIDDEN_WINDOW:]])
            positions = self._positions(seq, i, k.shape[0], num_tokens, length)
            inputs = LayerInputs(
                keys=k,
                values=v,
                hidden=hidden if first else hidden[-HIDDEN_WINDOW:],
                q_weight=attention.qkv_proj.weight[:q_size],
                q_bias=None if bias is None else bias[:q_size],
                cos=self.model.rope.cos,
                sin=self.model.rope.sin,
                num_heads=attention.num_heads,
                num_positions=length,
            )
            if compression.head_adaptive:
                kept, counts = press.select_head_adaptive(inputs, protected[positions])
                kept_valid.append(torch.arange(kept.shape[1])[None, :] < counts[:, None])
            else:
                kept = press.select(inputs, protected[positions])
            kept_index.append(kept)
            layer_positions.append(positions)
        num_kept = max(index.shape[1] for index in kept_index)
        kept_keys, kept_values, kept_positions = [], [], []
        for i, (k, v, positions) in enumerate(zip(keys, values, layer_positions, strict=True)):
            kept = F.pad(kept_index[i], (0, num_kept - kept_index[i].shape[1]))  # head-adaptive: masked
            index = kept[..., None].expand(-1, -1, k.shape[-1])
            kept_keys.append(k.gather(1, index))
            kept_values.append(v.gather(1, index))
            kept_positions.append(positions.gather(1, kept))
        seq.kv_positions = kept_positions
        if kept_valid:
            seq.kv_head_valid = [F.pad(valid, (0, num_kept - valid.shape[1])) for valid in kept_valid]
        num_protected = int(protected.sum())
        protected_kept = all(
            bool(((protected[p] & valid).sum(-1) == num_protected).all())
            for p, valid in zip(
                kept_positions, seq.kv_head_valid or [torch.tensor(True)] * len(keys), strict=True
            )
        )
        self.kv_cache.write(seq.block_table, 0, num_kept, kept_keys, kept_values)
        before = len(seq.block_table)
        self.block_manager.truncate(seq, num_kept)
        seq.num_evicted += num_tokens - num_kept
        self.compressed_requests += first
        self.tokens_evicted += num_tokens - num_kept
        log.debug(
            "kv compressed",
            extra={
                "request_id": seq.request_id,
                "method": compression.method,
                "after": "prefill" if first else "decode",
                "tokens": num_tokens,
                "kept": num_kept,
                "protected": compression.protected,
                "protected_kept": protected_kept,
                "blocks_freed": before - len(seq.block_table),
            },
        )

    @staticmethod
    def _positions(seq: Sequence, layer: int, num_heads: int, num_tokens: int, length: int) -> torch.Tensor:
        """[KVH, num_tokens] logical position of each cached token of one layer: those kept by the last
        compaction, then the tokens computed since, which sit at the end of the cache."""
        if seq.kv_positions is None:
            return torch.arange(num_tokens).expand(num_heads, num_tokens)
        old = seq.kv_positions[layer]
        new = torch.arange(length - (num_tokens - old.shape[1]), length).expand(num_heads, -1)
        return torch.cat([old, new], dim=1)
