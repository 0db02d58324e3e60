"""Sparse attention inside the real engine: at a budget covering the whole context it is dense attention;
below it, the fast tier serves the selected pages; the scheduler keeps working sets within the tier; and
layer-segmented prefill computes what ordinary prefill does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from precog.backend import Engine, Request, SamplingParams
from precog.backend.engine.kv_cache import KVCache
from precog.backend.layers.attention import AttentionMetadata
from precog.backend.layers.paged_attention import plan_attention
from precog.backend.sparse import SparseSettings, WorkingSetBudget, layer_segmented_prefill
from tests.backend.conftest import wait_for_idle

TEXT = (
    "Notes from the harbour office. " + "The ferry to the island leaves at nine and returns at six. " * 24
) + "Question: when does the ferry return? Answer:"


@contextmanager
def sparse_attention(engine: Engine, settings: SparseSettings) -> Iterator[None]:
    wait_for_idle(engine)
    engine.set_attention(settings)
    try:
        yield
    finally:
        wait_for_idle(engine)
        engine.set_attention(None)


def teacher_forced_logits(engine: Engine, ids: list[int], forced: list[int]) -> torch.Tensor:
    got: list[torch.Tensor] = []
    params = SamplingParams(temperature=0.0, max_tokens=len(forced))
    request = Request(f"sparse-logits-{id(got)}", ids, params, forced_token_ids=forced, on_logits=got.append)
    engine._run([request])
    return torch.stack(got)


def test_full_budget_equals_dense_and_a_small_budget_reads_the_fast_tier(engine: Engine) -> None:
    ids = engine.tokenizer.encode(TEXT)
    pages = -(-(len(ids) + 4) // engine.block_manager.block_size)
    assert pages > 8
    forced = engine.tokenizer.encode(" The ferry returns at six.")[:4]  # teacher-forced continuation
    dense = teacher_forced_logits(engine, ids, forced)
    with sparse_attention(engine, SparseSettings(budget_pages=pages, fast_tier_pages=4096)):
        full = teacher_forced_logits(engine, ids, forced)
    torch.testing.assert_close(full, dense, rtol=0, atol=2e-4)
    with sparse_attention(engine, SparseSettings(budget_pages=3, fast_tier_pages=4096)):
        sparse = teacher_forced_logits(engine, ids, forced)
        assert engine.sparse is not None
        stats, selection = engine.sparse.tier_stats, engine.sparse.selection
    assert (sparse - dense).abs().max() > 1e-3  # fewer keys: different logits
    layers = engine.spec.num_layers
    assert selection.decode_steps == len(forced) - 1
    assert stats.gathers <= layers * selection.decode_steps  # at most one gather per layer and step
    assert stats.lookups == stats.hits + stats.pages_loaded and stats.hits > 0
    assert stats.lookups <= layers * selection.decode_steps * 3 * engine.spec.num_kv_heads


def test_working_set_batching_keeps_the_running_sum_within_the_fast_tier(engine: Engine) -> None:
    prompts = [engine.tokenizer.encode(f"Request {i}: " + TEXT[: 300 + 40 * i]) for i in range(4)]
    params = SamplingParams(temperature=0.0, max_tokens=5)
    with sparse_attention(engine, SparseSettings(budget_pages=2, fast_tier_pages=400)):
        limit = engine.scheduler.working_set
        assert isinstance(limit, WorkingSetBudget)
        for i, ids in enumerate(prompts):
            engine.submit(Request(f"working-set-{i}", ids, params))
        most_running = 0
        while engine.has_work():
            engine.step()
            running = engine.scheduler.running
            most_running = max(most_running, len(running))
            assert len(running) <= 1 or limit.total(running) <= limit.capacity
        assert engine.sparse is not None
        assert engine.sparse.tier_stats.overflows == 0
    assert most_running >= 2  # the limit batches what fits instead of running one at a time


def test_layer_segmented_prefill_equals_ordinary_prefill(engine: Engine) -> None:
    ids = engine.tokenizer.encode(TEXT)[:150]
    block_size = engine.block_manager.block_size
    pages = -(-len(ids) // block_size)
    ordinary, segmented = KVCache(engine.spec, pages, block_size), KVCache(engine.spec, pages + 3, block_size)
    table = list(range(pages))
    meta = AttentionMetadata(  # one ordinary prefill step over the whole prompt
        positions=torch.arange(len(ids)),
        slot_mapping=torch.arange(len(ids)),
        plan=plan_attention([table], [len(ids)], [len(ids)], block_size),
        logit_rows=torch.tensor([len(ids) - 1]),
    )
    with torch.inference_mode():
        expected = engine.model(torch.tensor(ids), ordinary.layers, meta)[0]
    shifted = [b + 3 for b in table]  # other blocks of the large tier than the ordinary run's
    result = layer_segmented_prefill(engine.model, segmented.layers, shifted, ids, chunk_size=40)
    torch.testing.assert_close(result.logits, expected, rtol=0, atol=1e-4)
    assert result.staged_pages == pages
    for (k_ref, v_ref), (k_seg, v_seg) in zip(ordinary.layers, segmented.layers, strict=True):
        torch.testing.assert_close(k_seg[3:], k_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(v_seg[3:], v_ref, rtol=0, atol=1e-5)
