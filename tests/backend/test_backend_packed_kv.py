"""Packed KV pages (kv_dtype int8 / int4): the pool holds fewer bytes (measured on its storage), the same
code path serves greedy output close to float32's, prefix caching, presses and KV export/import, and
the paths that index pages themselves are refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backend_prompts import QUESTIONS, chat_prompt_ids
from conftest import TEST_ENGINE

from precog.backend import Engine, EngineConfig, Request, SamplingParams
from precog.backend.compress import KVCompression
from precog.backend.engine.kv_cache import KVCache
from precog.backend.layers.kv_pages import PackedPages, gather_pages, store_pages

NEW_TOKENS = 24


@pytest.fixture(scope="module")
def int8_engine(model_dir: Path) -> Engine:
    return Engine(EngineConfig(model_dir=model_dir, num_threads=1, kv_dtype="int8", **TEST_ENGINE))


def greedy(engine: Engine, prompts: list[list[int]]) -> list[list[int]]:
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    return [c.token_ids for c in engine.generate(prompts, params)]


def prefix_agreement(a: list[list[int]], b: list[list[int]]) -> float:
    same = sum(
        next((i for i, (x, y) in enumerate(zip(s, t, strict=True)) if x != y), len(s))
        for s, t in zip(a, b, strict=True)
    )
    return same / sum(len(s) for s in a)


def test_packed_pages_round_trip_within_the_quantisation_step() -> None:
    torch.manual_seed(0)
    x = torch.randn(10, 3, 64)
    for bits, bound in ((8, 0.02), (4, 0.35)):
        pages = PackedPages(4, 4, 3, 64, bits, torch.float32)
        slots = torch.tensor([0, 1, 2, 5, 6, 7, 8, 12, 13, 15])
        store_pages(pages, slots, x)
        back = gather_pages(pages, slots.view(2, 5))
        assert back.shape == (2, 5, 3, 64)
        assert (back.view(10, 3, 64) - x).abs().max() < bound, bits
        assert pages.nbytes == 16 * 3 * (64 * bits // 8 + 2 * 2 * 2)


def test_the_pool_holds_a_quarter_of_float32s_bytes_plus_scales(engine: Engine, int8_engine: Engine) -> None:
    full, packed = engine.kv_cache, int8_engine.kv_cache
    ratio = packed.nbytes / full.nbytes
    print(f"KV pool: float32 {full.nbytes:,} B, int8 {packed.nbytes:,} B ({ratio:.3f}x)")
    assert packed.nbytes == packed.bytes_per_block * 512
    assert packed.bytes_per_block == KVCache.block_bytes(engine.spec, 16, torch.float32, "int8")
    assert ratio == pytest.approx((64 + 8) / 256)
    int4 = KVCache(engine.spec, 64, 16, torch.float32, "int4")
    assert int4.nbytes / (full.nbytes / 8) == pytest.approx((32 + 8) / 256)


def test_a_memory_budget_buys_more_blocks_when_packed(model_dir: Path) -> None:
    from precog.backend.engine.limits import resolve_limits
    from precog.backend.model.spec import ModelSpec

    spec = ModelSpec.from_dir(model_dir)
    budget = {"kv_memory_bytes": 64 << 20, "max_model_len": 1024}
    _, full = resolve_limits(EngineConfig(model_dir=model_dir, **budget), spec)
    _, packed = resolve_limits(EngineConfig(model_dir=model_dir, kv_dtype="int8", **budget), spec)
    assert packed == (64 << 20) // KVCache.block_bytes(spec, 16, torch.float32, "int8")
    assert packed > 3.5 * full


def test_int8_pages_follow_float32_greedy_output(engine: Engine, int8_engine: Engine) -> None:
    prompts = [chat_prompt_ids(engine.tokenizer, q) for q in QUESTIONS[:8]]
    full, packed = greedy(engine, prompts), greedy(int8_engine, prompts)
    same_first = sum(a[0] == b[0] for a, b in zip(full, packed, strict=True))
    agreement = prefix_agreement(full, packed)
    print(f"int8 pages vs float32: same first token {same_first}/8, greedy prefix agreement {agreement:.1%}")
    assert same_first >= 7
    assert agreement >= 0.6


def test_int4_pages_serve_through_the_same_path(engine: Engine, model_dir: Path) -> None:
    int4 = Engine(EngineConfig(model_dir=model_dir, num_threads=1, kv_dtype="int4", **TEST_ENGINE))
    prompts = [chat_prompt_ids(engine.tokenizer, q) for q in QUESTIONS[:4]]
    full, packed = greedy(engine, prompts), greedy(int4, prompts)
    agreement = prefix_agreement(full, packed)
    print(f"int4 pages vs float32: greedy prefix agreement {agreement:.1%}")
    assert all(len(t) == NEW_TOKENS for t in packed)
    assert sum(a[0] == b[0] for a, b in zip(full, packed, strict=True)) >= 2


def test_prefix_cache_and_batching_over_packed_pages(int8_engine: Engine) -> None:
    prompt = chat_prompt_ids(int8_engine.tokenizer, QUESTIONS[2])
    alone = greedy(int8_engine, [prompt])[0]
    hits_before = int8_engine.stats().prefix_cache_hits
    again = greedy(int8_engine, [prompt, chat_prompt_ids(int8_engine.tokenizer, QUESTIONS[3])])
    assert int8_engine.stats().prefix_cache_hits > hits_before
    assert again[0] == alone


def test_kv_export_and_import_over_packed_pages(int8_engine: Engine) -> None:
    prompt = chat_prompt_ids(int8_engine.tokenizer, QUESTIONS[4])
    blob = int8_engine.export_kv(prompt)
    assert blob.keys[0].dtype == torch.float32 and len(blob.token_ids) == len(prompt)
    cold = greedy(int8_engine, [prompt])[0]
    done = []
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    int8_engine.submit(Request("imported", prompt, params, kv_prefix=blob, on_finish=done.append))
    while int8_engine.has_work():
        int8_engine.step()
    assert done and done[0].token_ids == cold


def test_a_press_compresses_packed_pages(int8_engine: Engine) -> None:
    prompt = chat_prompt_ids(int8_engine.tokenizer, " ".join(QUESTIONS[:4]))
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    before = int8_engine.stats()
    out = int8_engine.generate([prompt], params, compression=KVCompression("expected_attention", 0.5))
    assert len(out[0].token_ids) == 8
    evicted = int8_engine.stats().kv_tokens_evicted - before.kv_tokens_evicted
    assert evicted == len(prompt) - int(len(prompt) * 0.5)
    assert int8_engine.block_manager.num_free == int8_engine.block_manager.num_blocks


def test_paths_that_index_pages_themselves_are_refused(int8_engine: Engine, model_dir: Path) -> None:
    from precog.backend.engine.request_check import RequestError
    from precog.backend.sparse import SparseSettings

    for clash in (
        {"attention": "sparse"},
        {"attention_backend": "kernels"},
        {"kv_compression_method": "thinkv"},
    ):
        with pytest.raises(ValueError, match="kv_dtype int8 cannot serve"):
            EngineConfig(model_dir=model_dir, kv_dtype="int8", **clash)
    prompt = chat_prompt_ids(int8_engine.tokenizer, QUESTIONS[1])
    for method in ("ojakv", "thinkv"):
        with pytest.raises((RequestError, ValueError), match="keeps pages of its own"):
            int8_engine.generate(
                [prompt], SamplingParams(max_tokens=4), compression=KVCompression(method, 0.5)
            )
    with pytest.raises(ValueError, match="cannot serve packed KV pages"):
        int8_engine.set_attention(SparseSettings(budget_pages=4, sink_pages=1, fast_tier_pages=64))
