"""KV compression inside the real engine: real blocks freed, attention over the compacted cache equal
to full attention with the evicted keys masked out, and no compressed KV in the prefix cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from precog.backend import Engine, EngineConfig, Request, SamplingParams
from precog.backend.compress import KVCompression
from tests.backend.conftest import wait_for_idle

GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
REPEATED = "Repeat after me.\n" + "The quick brown fox jumps over the lazy dog.\n" * 12


def blocks_used(engine: Engine) -> int:
    return engine.stats().kv_blocks_used


def test_ratio_zero_matches_the_uncompressed_run(engine: Engine) -> None:
    plain = engine.generate([REPEATED], GREEDY)[0]
    for method in ("expected_attention", "snapkv"):
        same = engine.generate([REPEATED], GREEDY, compression=KVCompression(method, 0.0))[0]
        assert same.token_ids == plain.token_ids


def test_compression_frees_blocks_right_after_the_prefill(engine: Engine) -> None:
    wait_for_idle(engine)
    ids = engine.tokenizer.encode("Compressed prefill: " + REPEATED)
    block_size = engine.block_manager.block_size
    full_blocks = -(-len(ids) // block_size)
    kept = int(len(ids) * 0.75)
    before = engine.stats()
    engine.submit(Request("compress-blocks", ids, GREEDY, compression=KVCompression("knorm", 0.25)))
    engine.step()  # the whole prompt fits one step: prefill, compress, first token
    assert blocks_used(engine) == -(-kept // block_size) < full_blocks
    after = engine.stats()
    assert after.kv_compressed_requests == before.kv_compressed_requests + 1
    assert after.kv_tokens_evicted == before.kv_tokens_evicted + len(ids) - kept
    while engine.has_work():
        engine.step()
    assert blocks_used(engine) == 0


@pytest.mark.slow
def test_streaming_llm_equals_full_attention_with_evicted_keys_masked(
    engine: Engine, model_dir: Path
) -> None:
    """Our compacted cache (logical positions, keys rotated where they were) against transformers'
    eager attention over the whole sequence with the evicted prompt keys masked for later tokens."""
    ids = engine.tokenizer.encode(REPEATED)
    ours = engine.generate([ids], GREEDY, compression=KVCompression("streaming_llm", 0.5))[0].token_ids
    t, n_kept = len(ids), int(len(ids) * 0.5)
    keep = torch.zeros(t, dtype=torch.bool)
    keep[:4] = True
    keep[t - (n_kept - 4) :] = True
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    tokens = list(ids)
    for _ in range(GREEDY.max_tokens):
        n = len(tokens)
        mask = torch.full((n, n), float("-inf")).triu(1)
        mask[t:, :t] = torch.where(keep, 0.0, float("-inf"))
        with torch.inference_mode():
            logits = hf(torch.tensor([tokens]), attention_mask=mask[None, None]).logits[0, -1]
        tokens.append(int(logits.argmax()))
    assert ours == tokens[t:]


@pytest.mark.parametrize("method", ["streaming_llm", "expected_attention"])
def test_a_quarter_compressed_prompt_still_continues_repeated_text(engine: Engine, method: str) -> None:
    completion = engine.generate(
        [REPEATED], SamplingParams(temperature=0.0, max_tokens=12), KVCompression(method, 0.25)
    )[0]
    assert completion.text.startswith("The quick brown fox jumps over the lazy dog.")


def test_compressed_requests_neither_read_nor_fill_the_prefix_cache(engine: Engine) -> None:
    prompt = "A prompt only this test sends, about prefix caching and compression. " * 4
    compressed = engine.generate([prompt], GREEDY, compression=KVCompression("snapkv", 0.5))[0]
    assert compressed.cached_tokens == 0
    plain = engine.generate([prompt], GREEDY)[0]
    assert plain.cached_tokens == 0  # nothing of the compressed run was registered
    again = engine.generate([prompt], GREEDY, compression=KVCompression("snapkv", 0.5))[0]
    assert again.cached_tokens == 0 and again.token_ids == compressed.token_ids
    assert engine.generate([prompt], GREEDY)[0].cached_tokens > 0  # the plain run's blocks were


@pytest.mark.parametrize("method", ["random", "expected_attention"])
def test_every_block_is_free_after_compressed_requests_finish(engine: Engine, method: str) -> None:
    prompts = [REPEATED, "Tell me about the sea. " * 10, "Short prompt."]
    results = engine.generate(prompts, GREEDY, compression=KVCompression(method, 0.75))
    assert all(len(c.token_ids) == GREEDY.max_tokens or c.finish_reason == "stop" for c in results)
    wait_for_idle(engine)


def test_a_kv_export_refuses_compression(engine: Engine) -> None:
    request = Request(
        "export-compressed",
        engine.tokenizer.encode("hello"),
        GREEDY,
        on_kv=lambda blob: None,
        compression=KVCompression("knorm", 0.5),
    )
    with pytest.raises(ValueError, match="cannot compress"):
        engine.submit(request)


def test_bad_compression_is_refused_before_anything_runs(engine: Engine) -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        engine.generate(["hi"], GREEDY, compression=KVCompression("h2o", 0.5))
    assert blocks_used(engine) == 0


def test_teacher_forcing_feeds_the_given_tokens_and_reports_logits(engine: Engine) -> None:
    """What the quality harness relies on: forced outputs, and the logits each position produced."""
    ids = engine.tokenizer.encode(REPEATED)
    reference = engine.generate([ids], GREEDY)[0].token_ids
    forced = [reference[0], *reversed(reference[1:])]
    logits: list[torch.Tensor] = []
    finished = []
    request = Request(
        "forced", ids, GREEDY, forced_token_ids=forced, on_logits=logits.append, on_finish=finished.append
    )
    engine.submit(request)
    while engine.has_work():
        engine.step()
    assert finished[0].token_ids == forced
    assert len(logits) == GREEDY.max_tokens and int(logits[0].argmax()) == reference[0]
    with pytest.raises(ValueError, match="forced token ids"):
        engine.submit(Request("forced-bad", ids, GREEDY, forced_token_ids=[-1]))


def decode_logits(engine: Engine, prompts: list[list[int]], compression: KVCompression) -> list[torch.Tensor]:
    """Each prompt's [max_tokens, vocab] logits, all prompts submitted together and stepped here."""
    logits: list[list[torch.Tensor]] = [[] for _ in prompts]
    for i, ids in enumerate(prompts):
        request = Request(f"logits-{i}", ids, GREEDY, on_logits=logits[i].append, compression=compression)
        engine.submit(request)
    while engine.has_work():
        engine.step()
    return [torch.stack(rows) for rows in logits]


@pytest.mark.parametrize("method", ["snapkv", "expected_attention"])
def test_compression_after_a_chunked_prefill_equals_one_step(engine: Engine, method: str) -> None:
    """The attention inputs of a prompt prefilled over two steps are gathered whole before scoring."""
    budget = engine.scheduler.max_num_batched_tokens
    second = engine.tokenizer.encode(REPEATED)
    # The first prompt leaves room for all but the last 10 tokens of the second in the first step, so
    # SnapKV's 64-query window and the hidden-state statistics span both chunks.
    first = engine.tokenizer.encode("Tell me about the sea and its tides. " * 80)[: budget - len(second) + 10]
    compression = KVCompression(method, 0.5)
    alone = decode_logits(engine, [second], compression)[0]
    together = decode_logits(engine, [first, second], compression)[1]
    torch.testing.assert_close(together, alone, atol=1e-3, rtol=1e-3)


def peak_running(engine: Engine, prompts: list[str], compression: KVCompression | None) -> int:
    """Run the prompts together (24 tokens each); the most sequences that ran in one step."""
    params = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    finished: list[int] = []
    for i, prompt in enumerate(prompts):
        ids = engine.tokenizer.encode(prompt)
        engine.submit(
            Request(
                f"peak-{i}",
                ids,
                params,
                compression=compression,
                on_finish=lambda c: finished.append(len(c.token_ids)),
            )
        )
    peak = 0
    while engine.has_work():
        engine.step()
        peak = max(peak, engine.stats().running)
    assert finished == [24] * len(prompts)
    return peak


@pytest.mark.slow
def test_compression_runs_more_sequences_at_once_under_a_tiny_budget(model_dir: Path) -> None:
    """With too few blocks for every sequence, compressed ones hold fewer and more of them run together;
    every request completes (a preempted one is recomputed and compressed again) and all blocks free."""
    tiny = Engine(EngineConfig(model_dir=model_dir, max_model_len=192, num_kv_blocks=14, num_threads=1))
    prompts = [f"Story {i}: " + "the tide comes in and the tide goes out. " * (5 + i % 3) for i in range(8)]
    plain = peak_running(tiny, prompts, None)
    before = tiny.stats()
    compressed = peak_running(tiny, prompts, KVCompression("streaming_llm", 0.75))
    after = tiny.stats()
    assert compressed > plain  # 7 vs 3 when written
    preempted = after.preemptions - before.preemptions
    assert (
        len(prompts)
        < after.kv_compressed_requests - before.kv_compressed_requests
        <= len(prompts) + preempted
    )
    assert after.kv_blocks_used == 0
