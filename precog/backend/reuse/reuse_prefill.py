"""Prefill a prompt from a similar prompt's KV: match tokens, re-rotate reused keys, recompute a few.

Shapes: N new tokens, M reference tokens, H query heads sharing KVH key/value heads of size D. Per layer
the dense K/V [N, KVH, D] start as the reference's K/V at each matched token (keys re-rotated from the
reference position to the new one); the tokens still being computed in that layer overwrite theirs with
fresh K/V, and only those tokens' hidden states go through attention and the MLP (schedule.py decides
which go on to the next layer). The result is every layer's K/V for the N tokens plus the last token's
logits; the engine writes the K/V into the paged cache and decodes on as usual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import torch

from precog.backend.model.llama import DecoderLayer, LlamaModel, SelfAttention
from precog.backend.model.rope import apply_rope
from precog.backend.reuse.lsh import LSHConfig, LSHMatcher, TokenMatch, token_space
from precog.backend.reuse.reference import KVReuse, ReuseStats, check_reference
from precog.backend.reuse.rerotate import rotate, rotation
from precog.backend.reuse.schedule import select

QUERY_CHUNK = 512  # query rows per attention matmul: bounds the [KVH, G, rows, N] score tensor


@dataclass(slots=True)
class ReuseResult:
    """keys/values: per layer [KVH, N, D] (the layout of a KVBlob); logits [vocab] of the last token."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    logits: torch.Tensor
    match: TokenMatch
    stats: ReuseStats


def match_tokens(
    model: LlamaModel, token_ids: list[int], ref_token_ids: list[int], lsh: LSHConfig
) -> TokenMatch:
    """Each new token's reference token by LSH over the model's (RoPE-rotated) input embeddings."""
    spec = model.spec
    weight = model.embed_tokens.weight
    points = token_space(weight, token_ids, spec.inv_freq, spec.head_dim, lsh.use_rope)
    ref_points = token_space(weight, ref_token_ids, spec.inv_freq, spec.head_dim, lsh.use_rope)
    return LSHMatcher(lsh, spec.hidden_size).match(points, ref_points)


@torch.inference_mode()
def reuse_prefill(model: LlamaModel, token_ids: list[int], reuse: KVReuse) -> ReuseResult:
    """Every layer's K/V of `token_ids` computed from `reuse.reference` (see the module docstring).

    Raises ValueError when the reference does not fit the model or the prompt is empty."""
    spec, schedule, reference = model.spec, reuse.schedule, reuse.reference
    check_reference(reference, spec)
    n = len(token_ids)
    if n == 0:
        raise ValueError("the prompt is empty")
    started = time.perf_counter()
    match = match_tokens(model, token_ids, reference.token_ids, reuse.lsh)
    matched_at = time.perf_counter()

    matched = match.matched
    must = ~matched
    must[-1] = True  # the last token's logits are wanted: it is always computed
    new_pos = matched.nonzero().squeeze(1)
    ref_pos = match.ref_index[new_pos]
    turn = rotation(new_pos - ref_pos, spec.inv_freq)
    num_matched = len(new_pos)

    active = torch.arange(n) if schedule.full_layers > 0 else must.nonzero().squeeze(1)
    x = model.embed_tokens(torch.tensor(token_ids, dtype=torch.long)[active])
    keys, values, computed = [], [], []
    for layer_index, module in enumerate(model.layers):
        layer = cast(DecoderLayer, module)
        attn = cast(SelfAttention, layer.self_attn)
        k_all = torch.empty(n, spec.num_kv_heads, spec.head_dim, dtype=x.dtype)
        v_all = torch.empty(n, spec.num_kv_heads, spec.head_dim, dtype=x.dtype)
        k_all[new_pos] = rotate(reference.keys[layer_index][:, ref_pos].transpose(0, 1).float(), turn).to(
            x.dtype
        )
        v_all[new_pos] = reference.values[layer_index][:, ref_pos].transpose(0, 1).to(x.dtype)

        rows = len(active)
        q, k, v = attn.qkv_proj(layer.input_layernorm(x)).split(attn.split, dim=-1)
        cos, sin = model.rope.at(active)
        cos_sin = (cos.to(x.dtype), sin.to(x.dtype))
        q = apply_rope(q.view(rows, attn.num_heads, attn.head_dim), cos_sin)
        k = apply_rope(k.view(rows, attn.num_kv_heads, attn.head_dim), cos_sin)
        v = v.view(rows, attn.num_kv_heads, attn.head_dim)
        selecting = layer_index >= schedule.full_layers
        if selecting:
            candidates = (~must[active]).nonzero().squeeze(1)  # rows of matched tokens still computed
            old = active[candidates]
            deviation = _deviation(k[candidates], v[candidates], k_all[old], v_all[old])
        k_all[active], v_all[active] = k, v
        if selecting:
            received = _attention_received(q[-1], n - 1, k_all, attn.scale)
            quota = round(schedule.ratio(layer_index) * num_matched)
            chosen = select(candidates, deviation, received[active[candidates]], quota)
            keep = must[active].clone()
            keep[chosen] = True
            q, x, active = q[keep], x[keep], active[keep]

        out = _attend(q, active, k_all, v_all, attn.scale)
        x = x + attn.o_proj(out.reshape(len(active), -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
        keys.append(k_all.transpose(0, 1).contiguous())
        values.append(v_all.transpose(0, 1).contiguous())
        computed.append(len(active))
    logits = model.lm_head(model.norm(x[-1:]))[0]
    stats = ReuseStats(
        num_tokens=n,
        matched=num_matched,
        computed_per_layer=computed,
        match_seconds=matched_at - started,
    )
    return ReuseResult(keys, values, logits, match, stats)


def _deviation(k: torch.Tensor, v: torch.Tensor, k_old: torch.Tensor, v_old: torch.Tensor) -> torch.Tensor:
    """[C]: relative distance of fresh K and V [C, KVH, D] from the reused ones, summed."""

    def rel(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return (new - old).flatten(1).norm(dim=1) / old.flatten(1).norm(dim=1).clamp_min(1e-6)

    return rel(k, k_old) + rel(v, v_old)


def _attention_received(q: torch.Tensor, position: int, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """[N]: the attention one query [H, D] at `position` pays each key [N, KVH, D], mean over heads."""
    h, d = q.shape
    kvh = keys.shape[1]
    grouped = q.view(kvh, h // kvh, d)
    scores = torch.einsum("kgd,nkd->kgn", grouped, keys[: position + 1]) * scale
    weights = torch.softmax(scores, dim=-1).mean(dim=(0, 1))
    return torch.cat((weights, weights.new_zeros(len(keys) - position - 1)))


def _attend(
    q: torch.Tensor, q_pos: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [n, H, D] at positions q_pos [n] attend causally over keys/values [N, KVH, D] -> [n, H, D]."""
    n, h, d = q.shape
    kvh = keys.shape[1]
    k = keys.permute(1, 0, 2).unsqueeze(1)  # [KVH, 1, N, D]
    v = values.permute(1, 0, 2).unsqueeze(1)
    key_pos = torch.arange(len(keys))
    out = torch.empty_like(q)
    for start in range(0, n, QUERY_CHUNK):
        chunk = q[start : start + QUERY_CHUNK]
        rows = len(chunk)
        grouped = chunk.view(rows, kvh, h // kvh, d).permute(1, 2, 0, 3)  # [KVH, G, rows, D]
        scores = torch.matmul(grouped, k.transpose(-1, -2)) * scale  # [KVH, G, rows, N]
        future = key_pos[None, :] > q_pos[start : start + rows, None]
        scores.masked_fill_(future, float("-inf"))
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)  # [KVH, G, rows, D]
        out[start : start + rows] = attended.permute(2, 0, 1, 3).reshape(rows, h, d)
    return out
