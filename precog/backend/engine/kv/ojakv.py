"""OjaKV in the engine: a sequence's middle tokens leave the full-rank blocks for low-rank pages.

After the prefill, the first n_sink tokens, protected ranges and the n_recent most recent tokens stay
in full-rank blocks (compacted to the front of the sequence's block table: fixed ones first, then the
recent window; keys keep the RoPE of their positions, so order does not matter to attention). Every
other prompt token becomes coefficients c = Uᵀk, e = Uᵀv in per-layer/per-head bases that start from
the offline PCA calibration and get a full Oja update on those very tokens; the coefficients go to
pages taken from the same block pool, and the full-rank blocks they held are freed.

In decode, once the recent window has grown by `migrate_every` tokens, its oldest ones follow: a light
Oja update (one step, decode_eta) on exactly those tokens, the stored coefficients re-expressed in the
new basis (c ← U'ᵀU c, the only loss being what leaves the subspace), the new tokens appended, and the
full-rank entries after them shifted down so a full-rank block is freed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from precog.backend.compress import KVCompression
from precog.backend.compress.oja import OjaKVSettings, oja_update, rank_for_ratio
from precog.backend.compress.oja_calibration import (
    CALIBRATION_FILE,
    CALIBRATION_TOKENS,
    PCABases,
    calibration_text,
    load_or_calibrate,
)
from precog.backend.engine.kv.base import (
    AttentionExtras,
    EngineParts,
    KVPolicy,
    KVState,
    RowSpan,
    state_of,
)
from precog.backend.engine.kv.lowrank_cache import (
    LowRankRow,
    LowRankState,
    new_state,
    read_coefficients,
    write_coefficients,
)
from precog.backend.engine.kv_cache import KVCache
from precog.backend.engine.sequence import Sequence
from precog.backend.layers.attention import AttentionMetadata
from precog.backend.layers.lowrank_attention import tokens_per_page
from precog.backend.layers.paged_attention import plan_attention
from precog.backend.model.llama import LlamaModel
from precog.backend.model.spec import ModelSpec

log = logging.getLogger(__name__)


def prefill_kv(
    model: LlamaModel, spec: ModelSpec, token_ids: list[int], block_size: int = 16
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer keys (RoPE applied) and values [KVH, T, D] of one prompt, in a private scratch cache."""
    n = len(token_ids)
    cache = KVCache(spec, -(-n // block_size), block_size, model.embed_tokens.weight.dtype)
    table = list(range(-(-n // block_size)))
    meta = AttentionMetadata(
        positions=torch.arange(n),
        slot_mapping=cache.slots(table, 0, n),
        plan=plan_attention([table], [n], [n], block_size),
        logit_rows=torch.tensor([n - 1]),
    )
    with torch.inference_mode():
        model(torch.tensor(token_ids), cache.layers, meta)
    return cache.read(table, n)


@dataclass(eq=False)
class OjaKVState(KVState):
    """compressed: whether the prefill's move ran (it may have found no free pages: then lowrank stays
    None and the sequence keeps full-rank KV); lowrank: the coefficient store."""

    compressed: bool = False
    lowrank: LowRankState | None = None

    def reset(self) -> None:
        self.compressed, self.lowrank = False, None

    def release_side_blocks(self) -> list[int]:
        if self.lowrank is None:
            return []
        pages, self.lowrank.block_table = self.lowrank.block_table, []
        return pages


class OjaKV(KVPolicy):
    """Moves sequences' middle tokens to low-rank pages (`compress`) and keeps the window sliding
    (`migrate`); the calibration bases load (or are computed and cached) on first use."""

    def __init__(self, parts: EngineParts, settings: OjaKVSettings | None = None) -> None:
        super().__init__(parts)
        self.tokenizer = parts.tokenizer
        self.calibration_path = parts.model_dir / CALIBRATION_FILE
        self.settings = settings or OjaKVSettings()
        self._bases: PCABases | None = None

    def dense_only(self, compression: KVCompression) -> str | None:
        return "kv_compression method 'ojakv'"

    def start(self, seq: Sequence, compression: KVCompression) -> KVState:
        return OjaKVState(self, compression)

    def contribute(self, seq: Sequence, span: RowSpan, extras: AttentionExtras) -> None:
        lowrank = state_of(seq, OjaKVState).lowrank
        if lowrank is None:
            return
        if span.num_new != 1:
            raise RuntimeError(f"{seq.request_id}: low-rank KV is only read by single-token decodes")
        extras.lowrank_rows.append(LowRankRow(span.row, seq.block_table, span.end - seq.num_evicted, lowrank))

    def after_step(self, seq: Sequence) -> bool:
        """Right after the prefill the move; after each later step the window's slide."""
        state = state_of(seq, OjaKVState)
        if not state.compressed:
            state.compressed = True
            self.compress(seq, state)
            self.counters.compressed_requests += 1
            return True
        return self.migrate(seq, state)

    def bases(self) -> PCABases:
        """The PCA calibration (cached on disk beside the checkpoint)."""
        if self._bases is None:
            limit = min(CALIBRATION_TOKENS, int(self.model.rope.cos.shape[0]))
            ids = list(self.tokenizer.encode(calibration_text()))[:limit]

            def collect(token_ids: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
                return prefill_kv(self.model, self.model.spec, token_ids, self.kv_cache.block_size)

            self._bases = load_or_calibrate(self.calibration_path, ids, collect)
        return self._bases

    @torch.inference_mode()
    def compress(self, seq: Sequence, state: OjaKVState) -> None:
        """Right after seq's prefill: middle tokens to coefficient pages, their full-rank blocks freed."""
        settings, bm, compression = self.settings, self.block_manager, state.compression
        num_tokens = seq.num_cached_tokens
        head_dim = self.model.spec.head_dim
        rank = rank_for_ratio(compression.ratio, head_dim)
        positions = torch.arange(num_tokens)
        fixed = positions < settings.n_sink
        for start, end in compression.protected:
            fixed[start : min(end, num_tokens)] = True
        recent = (positions >= num_tokens - settings.n_recent) & ~fixed
        middle = ~(fixed | recent)
        num_middle = int(middle.sum())
        num_full = num_tokens - num_middle
        pages = -(-num_middle // tokens_per_page(bm.block_size, head_dim, rank))
        if pages > len(seq.block_table) - bm.blocks_for(num_full) + bm.num_free:
            log.warning("ojakv skipped: no free blocks for its pages", extra={"request_id": seq.request_id})
            return
        keys, values = self.kv_cache.read(seq.block_table, num_tokens)
        order = torch.cat([fixed.nonzero()[:, 0], recent.nonzero()[:, 0]])
        bases = self.bases()
        basis_k, basis_v, coeff_k, coeff_v = [], [], [], []
        for layer, (k, v) in enumerate(zip(keys, values, strict=True)):
            start_k, start_v = bases.top(layer, rank)
            xk, xv = k[:, middle], v[:, middle]
            uk = oja_update(start_k, xk, settings.prefill_eta, settings.prefill_steps)
            uv = oja_update(start_v, xv, settings.prefill_eta, settings.prefill_steps)
            basis_k.append(uk)
            basis_v.append(uv)
            coeff_k.append(xk @ uk)
            coeff_v.append(xv @ uv)
        self.kv_cache.write(
            seq.block_table, 0, num_full, [k[:, order] for k in keys], [v[:, order] for v in values]
        )
        bm.truncate(seq, num_full)
        lowrank = new_state(basis_k, basis_v, int(fixed.sum()), bm.block_size)
        lowrank.block_table = bm.take(pages) or []
        write_coefficients(self.kv_cache.plain_layers(), lowrank, 0, coeff_k, coeff_v)
        lowrank.num_tokens = num_middle
        seq.num_evicted += num_middle
        state.lowrank = lowrank

    @torch.inference_mode()
    def migrate(self, seq: Sequence, seq_state: OjaKVState) -> bool:
        """After a decode step: if the recent window is `migrate_every` over its size, move its oldest
        tokens to the low-rank store (skipped, to retry later, while no page is free for them)."""
        state, settings, bm = seq_state.lowrank, self.settings, self.block_manager
        if state is None:
            return False
        cached, m = seq.num_cached_tokens, settings.migrate_every
        if cached - state.num_fixed < settings.n_recent + m:
            return False
        missing = state.pages_for(state.num_tokens + m) - len(state.block_table)
        if missing > 0:
            pages = bm.take(missing)
            if pages is None:
                return False
            state.block_table.extend(pages)
        keys, values = self.kv_cache.read(seq.block_table, cached)
        old_k, old_v = read_coefficients(self.kv_cache.plain_layers(), state)
        lo, hi = state.num_fixed, state.num_fixed + m
        coeff_k, coeff_v = [], []
        for layer in range(len(keys)):
            xk, xv = keys[layer][:, lo:hi], values[layer][:, lo:hi]
            uk = oja_update(state.basis_k[layer], xk, settings.decode_eta)
            uv = oja_update(state.basis_v[layer], xv, settings.decode_eta)
            to_new_k = state.basis_k[layer].transpose(1, 2) @ uk  # [KVH, r, r]: c' = U'ᵀ U c
            to_new_v = state.basis_v[layer].transpose(1, 2) @ uv
            coeff_k.append(torch.cat([old_k[layer] @ to_new_k, xk @ uk], dim=1))
            coeff_v.append(torch.cat([old_v[layer] @ to_new_v, xv @ uv], dim=1))
            state.basis_k[layer], state.basis_v[layer] = uk, uv
        write_coefficients(self.kv_cache.plain_layers(), state, 0, coeff_k, coeff_v)
        state.num_tokens += m
        shifted_k = [torch.cat([k[:, :lo], k[:, hi:]], dim=1) for k in keys]
        shifted_v = [torch.cat([v[:, :lo], v[:, hi:]], dim=1) for v in values]
        self.kv_cache.write(seq.block_table, lo, cached - m, shifted_k, shifted_v)
        bm.truncate(seq, cached - m)
        seq.num_evicted += m
        return True
