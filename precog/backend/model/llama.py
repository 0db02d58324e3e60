"""Our Llama-family decoder over flat token batches, with attention reading a paged KV cache.

Every step runs the new tokens of all scheduled sequences as one flat [num_tokens, hidden] batch: the
projections and MLP see no padding, and only attention needs to know where sequences begin and end
(`AttentionMetadata`). q/k/v and gate/up projections are fused into one matmul each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from precog.backend.layers.attention import AttentionMetadata, paged_attention
from precog.backend.layers.kv_pages import LayerPages
from precog.backend.model.rope import RotaryEmbedding, apply_rope
from precog.backend.model.spec import ModelSpec


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class SelfAttention(nn.Module):
    def __init__(self, spec: ModelSpec, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = spec.num_heads, spec.num_kv_heads, spec.head_dim
        q_size, kv_size = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
        self.split = (q_size, kv_size, kv_size)
        self.qkv_proj = nn.Linear(spec.hidden_size, q_size + 2 * kv_size, bias=spec.qkv_bias)
        self.o_proj = nn.Linear(q_size, spec.hidden_size, bias=spec.o_bias)
        self.scale = spec.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv_cache: LayerPages,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        n = x.shape[0]
        if meta.capture is not None:
            meta.capture.record(self.layer, x)
        q, k, v = self.qkv_proj(x).split(self.split, dim=-1)
        q = apply_rope(q.view(n, self.num_heads, self.head_dim), rope)
        k = apply_rope(k.view(n, self.num_kv_heads, self.head_dim), rope)
        v = v.view(n, self.num_kv_heads, self.head_dim)
        if meta.layer_attention is not None:
            out = meta.layer_attention.attend(self.layer, q, k, v, kv_cache, meta, self.scale)
        else:
            out = paged_attention(q, k, v, kv_cache, meta, self.scale, self.layer)
        return self.o_proj(out.view(n, -1))


class SwiGLU(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(spec.hidden_size, 2 * spec.intermediate_size, bias=spec.mlp_bias)
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=spec.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, spec: ModelSpec, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.self_attn = SelfAttention(spec, layer)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = SwiGLU(spec)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv_cache: LayerPages,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, kv_cache, meta)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Token ids -> logits; `kv_caches[i]` is layer i's (keys, values), each [blocks, block_size, KVH, D]."""

    def __init__(self, spec: ModelSpec, rope: RotaryEmbedding) -> None:
        super().__init__()
        self.spec = spec
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(spec, i) for i in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rope = rope

    def forward(
        self,
        input_ids: torch.Tensor,
        kv_caches: list[LayerPages],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """[N] token ids -> [len(meta.logit_rows), vocab] logits of the rows that will be sampled."""
        x = self.embed_tokens(input_ids)
        cos, sin = self.rope.at(meta.positions)
        cos_sin = (cos.to(x.dtype), sin.to(x.dtype))
        for layer, cache in zip(self.layers, kv_caches, strict=True):
            x = layer(x, cos_sin, cache, meta)
        return self.lm_head(self.norm(x[meta.logit_rows])).float()
