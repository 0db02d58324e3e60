"""The engine in bfloat16 runs the same code path as in float32: weights and KV pages in the chosen dtype
(half the bytes, measured on the tensors), greedy output close to float32's, KV export and import."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backend_prompts import QUESTIONS, chat_prompt_ids
from conftest import TEST_ENGINE

from precog.backend import Engine, EngineConfig, SamplingParams

NEW_TOKENS = 24


@pytest.fixture(scope="module")
def bf16_engine(model_dir: Path) -> Engine:
    return Engine(EngineConfig(model_dir=model_dir, num_threads=1, dtype="bfloat16", **TEST_ENGINE))


def held_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_weights_and_kv_pages_are_held_in_the_chosen_dtype(engine: Engine, bf16_engine: Engine) -> None:
    assert {p.dtype for p in bf16_engine.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in engine.model.parameters()} == {torch.float32}
    pages = [t for layer in bf16_engine.kv_cache.layers for t in layer]
    full = [t for layer in engine.kv_cache.layers for t in layer]
    assert {t.dtype for t in pages} == {torch.bfloat16}
    assert held_bytes(pages) * 2 == held_bytes(full)
    assert bf16_engine.kv_cache.bytes_per_block * 2 == engine.kv_cache.bytes_per_block
    assert held_bytes(list(bf16_engine.model.parameters())) * 2 == held_bytes(list(engine.model.parameters()))


def test_bfloat16_greedy_output_follows_float32(engine: Engine, bf16_engine: Engine) -> None:
    prompts = [chat_prompt_ids(engine.tokenizer, q) for q in QUESTIONS[:8]]
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True)
    full = engine.generate(prompts, params)
    half = bf16_engine.generate(prompts, params)
    same_first = sum(a.token_ids[0] == b.token_ids[0] for a, b in zip(full, half, strict=True))
    agreement = sum(
        next((i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=True)) if x != y), NEW_TOKENS)
        for a, b in zip(full, half, strict=True)
    ) / (NEW_TOKENS * len(prompts))
    print(f"bfloat16 vs float32: same first token {same_first}/8, greedy prefix agreement {agreement:.1%}")
    assert same_first >= 6
    assert agreement >= 0.3
    assert all(len(c.token_ids) == NEW_TOKENS for c in half)


def test_bfloat16_kv_exports_and_imports(bf16_engine: Engine) -> None:
    prompt = chat_prompt_ids(bf16_engine.tokenizer, QUESTIONS[0])
    blob = bf16_engine.export_kv(prompt)
    assert blob.keys[0].dtype == torch.bfloat16 and len(blob.token_ids) == len(prompt)
    params = SamplingParams(temperature=0.0, max_tokens=8)
    cold = bf16_engine.generate([prompt], params)[0]
    from precog.backend import Request

    done = []
    bf16_engine.submit(Request("imported", prompt, params, kv_prefix=blob, on_finish=done.append))
    while bf16_engine.has_work():
        bf16_engine.step()
    assert done and done[0].token_ids == cold.token_ids


def test_ojakv_is_refused_where_the_engine_is_not_float32(bf16_engine: Engine, model_dir: Path) -> None:
    from precog.backend.compress import KVCompression
    from precog.backend.engine.request_check import RequestError

    prompt = chat_prompt_ids(bf16_engine.tokenizer, QUESTIONS[1])
    with pytest.raises((RequestError, ValueError), match="ojakv needs an engine in float32"):
        bf16_engine.generate([prompt], SamplingParams(max_tokens=4), compression=KVCompression("ojakv", 0.5))
    with pytest.raises(ValueError, match="ojakv needs dtype float32"):
        EngineConfig(model_dir=model_dir, dtype="bfloat16", kv_compression_method="ojakv")


def test_sparse_attention_pages_a_bfloat16_cache(bf16_engine: Engine) -> None:
    from precog.backend.sparse import SparseSettings

    bf16_engine.set_attention(SparseSettings(budget_pages=4, sink_pages=1, fast_tier_pages=64))
    try:
        assert bf16_engine.sparse is not None and bf16_engine.sparse.tier.k.dtype == torch.bfloat16
        prompt = chat_prompt_ids(bf16_engine.tokenizer, " ".join(QUESTIONS))  # ~200 tokens: 13 pages
        out = bf16_engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
        assert len(out[0].token_ids) == 8 and bf16_engine.sparse.tier.stats.pages_loaded > 0
    finally:
        bf16_engine.set_attention(None)
