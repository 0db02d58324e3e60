"""Engine behaviour on the real model: batching, prefix caching, KV export/import, preemption, aborts."""

from __future__ import annotations

from pathlib import Path

import pytest
from backend_prompts import QUESTIONS, chat_prompt_ids

from precog.backend import Engine, EngineConfig, Request, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


def assert_all_blocks_free(engine: Engine) -> None:
    stats = engine.stats()
    assert (stats.running, stats.waiting, stats.kv_blocks_used) == (0, 0, 0)
    assert stats.kv_blocks_free == stats.kv_blocks_total


@pytest.fixture(scope="module")
def prompts(engine: Engine) -> list[list[int]]:
    return [chat_prompt_ids(engine.tokenizer, q) for q in QUESTIONS[:8]]


@pytest.fixture(scope="module")
def cold(engine: Engine, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy tokens of each prompt run alone, with the prefix cache unable to help (distinct prompts)."""
    return [engine.generate([p], GREEDY)[0].token_ids for p in prompts]


def test_batched_equals_one_by_one(engine: Engine, prompts: list[list[int]], cold: list[list[int]]) -> None:
    batched = engine.generate(prompts, GREEDY)
    assert [c.token_ids for c in batched] == cold
    assert all(c.finish_reason in ("stop", "length") for c in batched)
    assert_all_blocks_free(engine)


def test_no_prompts_no_work(engine: Engine) -> None:
    assert engine.generate([], GREEDY) == []


def test_text_prompts_and_completion_fields(engine: Engine) -> None:
    [done] = engine.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=5))
    assert done.prompt_token_ids == engine.tokenizer.encode("The capital of France is")
    assert done.completion_tokens == 5 and done.finish_reason == "length"
    assert done.text == engine.tokenizer.decode(done.token_ids, skip_special_tokens=True)


def test_prefix_cache_hit_gives_cold_tokens(
    engine: Engine, prompts: list[list[int]], cold: list[list[int]]
) -> None:
    before = engine.stats()
    again = engine.generate(prompts[:3], GREEDY)
    after = engine.stats()
    assert [c.token_ids for c in again] == cold[:3]
    full_blocks = sum((len(p) - 1) // 16 for p in prompts[:3])
    assert after.prefix_cache_hits - before.prefix_cache_hits == 16 * full_blocks
    assert all(c.cached_tokens > 0 for c in again)
    assert_all_blocks_free(engine)


def test_shared_prefix_with_new_suffix(engine: Engine, prompts: list[list[int]]) -> None:
    """A long shared system prompt is computed once; answers match a cache-less engine's."""
    system = "You are a helpful assistant who answers briefly and precisely. " * 6
    ids = [
        engine.tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": q}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in QUESTIONS[8:11]
    ]
    token_ids = [engine.tokenizer.encode(t) for t in ids]
    first = engine.generate(token_ids[:1], GREEDY)
    before = engine.stats().prefix_cache_hits
    rest = engine.generate(token_ids[1:], GREEDY)
    assert engine.stats().prefix_cache_hits - before >= 2 * 16 * 4
    cold = [engine.generate([t], GREEDY)[0].token_ids for t in token_ids]
    assert [c.token_ids for c in first + rest] == cold


def test_export_then_import_kv_gives_cold_tokens(
    engine: Engine, prompts: list[list[int]], cold: list[list[int]]
) -> None:
    prompt = prompts[4]
    blob = engine.export_kv(prompt)
    assert blob.model == engine.model_name and blob.token_ids == prompt
    assert blob.num_layers == engine.spec.num_layers
    assert tuple(blob.keys[0].shape) == (engine.spec.num_kv_heads, len(prompt), engine.spec.head_dim)
    assert_all_blocks_free(engine)

    fresh = Engine(EngineConfig(model_dir=engine.model_dir, max_model_len=1024, num_kv_blocks=128))
    done: list = []
    fresh.submit(Request("imported", prompt, GREEDY, kv_prefix=blob, on_finish=done.append))
    while not done:
        fresh.step()
    assert done[0].token_ids == cold[4]
    assert done[0].cached_tokens == len(prompt) - 1
    stats = fresh.stats()
    assert stats.prompt_tokens == 1  # only the last prompt token was computed
    # The imported blocks joined the prefix cache: the same prompt now hits without the blob.
    [again] = fresh.generate([prompt], GREEDY)
    assert again.token_ids == cold[4]
    assert fresh.stats().prefix_cache_hits == 16 * ((len(prompt) - 1) // 16)


def test_import_of_a_partial_prefix(engine: Engine, prompts: list[list[int]], cold: list[list[int]]) -> None:
    prompt = prompts[5]
    blob = engine.export_kv(prompt[:21])  # ends mid-block
    done: list = []
    engine.submit(Request("partial", prompt, GREEDY, kv_prefix=blob, on_finish=done.append))
    while not done:
        engine.step()
    assert done[0].token_ids == cold[5]
    assert_all_blocks_free(engine)


def test_preemption_under_a_tiny_budget_still_gives_cold_tokens(
    model_dir: Path, prompts: list[list[int]], cold: list[list[int]]
) -> None:
    # 8 sequences of ~40-60 tokens need ~32 blocks; 12 blocks of 16 force preemption and recompute.
    tiny = Engine(EngineConfig(model_dir=model_dir, max_model_len=192, num_kv_blocks=12, block_size=16))
    out = tiny.generate(prompts, GREEDY)
    assert tiny.stats().preemptions > 0
    assert [c.token_ids for c in out] == cold
    assert_all_blocks_free(tiny)


def test_chunked_prefill_matches(model_dir: Path, prompts: list[list[int]], cold: list[list[int]]) -> None:
    """A 16-token step budget splits every prompt into chunks interleaved with other decodes."""
    chunky = Engine(
        EngineConfig(
            model_dir=model_dir,
            max_model_len=256,
            num_kv_blocks=128,
            max_num_batched_tokens=16,
            max_num_seqs=4,
            enable_prefix_caching=False,
        )
    )
    out = chunky.generate(prompts, GREEDY)
    assert [c.token_ids for c in out] == cold
    assert_all_blocks_free(chunky)


def test_abort_frees_blocks_at_once(engine: Engine, prompts: list[list[int]]) -> None:
    finished: list = []
    engine.submit(Request("victim", prompts[0], SamplingParams(max_tokens=200), on_finish=finished.append))
    engine.submit(Request("bystander", prompts[1], GREEDY, on_finish=finished.append))
    for _ in range(3):
        engine.step()
    assert engine.stats().kv_blocks_used > 0
    engine.abort("victim")
    engine.step()
    assert [c.request_id for c in finished] == ["victim"] and finished[0].finish_reason == "abort"
    while len(finished) < 2:
        engine.step()
    assert_all_blocks_free(engine)


def test_duplicate_request_id_is_refused(engine: Engine, prompts: list[list[int]]) -> None:
    done: list = []
    engine.submit(Request("twice", prompts[0], GREEDY, on_finish=done.append))
    with pytest.raises(ValueError, match="already running"):
        engine.submit(Request("twice", prompts[0], GREEDY))
    while not done:
        engine.step()
    assert_all_blocks_free(engine)


def test_decode_attention_through_the_kernels_package(
    model_dir: Path, prompts: list[list[int]], cold: list[list[int]]
) -> None:
    """The "kernels" attention backend (kernels.paged_attention, decode rows) gives the same tokens."""
    via_kernels = Engine(
        EngineConfig(model_dir=model_dir, max_model_len=256, num_kv_blocks=64, attention_backend="kernels")
    )
    out = via_kernels.generate(prompts[:3], GREEDY)
    assert [c.token_ids for c in out] == cold[:3]
    kernels_ran = ops_run(via_kernels, prompts[0])
    assert "precog.kernels.paged_attention.torch" in kernels_ran  # CPU tensors: the package's reference
    assert "aten::scaled_dot_product_attention" in kernels_ran


def test_the_torch_backend_runs_neither_kernel(engine: Engine, prompts: list[list[int]]) -> None:
    ran = ops_run(engine, prompts[0])
    assert not any(name.startswith("precog.kernels.paged_attention") for name in ran)
    assert "aten::scaled_dot_product_attention" not in ran


def ops_run(engine: Engine, prompt: list[int]) -> set[str]:
    """Names of the profiler events of one short greedy generation: which functions really ran."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as trace:
        engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True))
    return {event.key for event in trace.key_averages()}
