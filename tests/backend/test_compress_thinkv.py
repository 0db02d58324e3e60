"""ThinKV: thought segmentation, sparsity typing and the quantise-evict policy on hand-checkable
inputs, then inside the real engine: ratio 0 leaves greedy output unchanged, eviction frees blocks."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
import torch

from precog.backend import Engine, Request, SamplingParams
from precog.backend.compress import KVCompression
from precog.backend.compress.thinkv import (
    FULL_BITS,
    ThinKVPolicy,
    ThinKVState,
    Thought,
    ThoughtKind,
    attention_sparsity,
    attention_weights,
    classify,
    delimiter_ids,
    generated_budget,
    plan_eviction,
    quantise_channels,
    quantise_tokens,
    split_thoughts,
    token_bytes,
)
from precog.backend.engine.detokenizer import IncrementalDetokenizer
from precog.backend.engine.kv import ThinKVSequence
from precog.backend.engine.sequence import Sequence
from precog.kernels import quantize
from tests.backend.conftest import wait_for_idle

R, E, T = ThoughtKind.REASONING, ThoughtKind.EXECUTION, ThoughtKind.TRANSITION


def test_delimiters_are_newlines_and_sentence_ends() -> None:
    vocab = [(0, "Hello"), (1, ".\n"), (2, " done."), (3, "3"), (4, " ? "), (5, "\n"), (6, ",")]
    assert delimiter_ids(vocab) == {1, 2, 4, 5}


def test_thoughts_close_after_a_delimiter_once_long_enough_or_at_max_len() -> None:
    ids = [1, 9, 2, 3, 9, 4, 5, 6, 7, 8, 9, 1]
    closed, open_start = split_thoughts(ids, 0, len(ids), frozenset({9}), min_len=3, max_len=5)
    # the 9 at 1 is too early (2 tokens); 9 at 4 closes [0, 5); no 9 within 5 more tokens: cut at 10
    assert closed == [(0, 5), (5, 10)]
    assert open_start == 10
    closed, open_start = split_thoughts(ids, 10, 11, frozenset({9}), min_len=1, max_len=5)
    assert (closed, open_start) == ([(10, 11)], 11)


def test_sparsity_counts_the_keys_holding_the_attention_mass() -> None:
    focused = torch.tensor([1.0, 0.0, 0.0, 0.0])
    uniform = torch.full((4,), 0.25)
    weights = torch.stack([focused, uniform])[None]  # [H=1, n=2, T=4]
    sparsity = attention_sparsity(weights, torch.tensor([4, 4]), mass=0.5)
    assert sparsity.tolist() == [0.75, 0.5]  # 1 of 4 keys, then 2 of 4 keys hold half the mass
    assert [classify(s, (0.6, 0.7)) for s in (0.5, 0.65, 0.75)] == [R, E, T]


def test_attention_weights_are_causal_over_keys_in_any_cache_order() -> None:
    keys = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [2.0, 0.0]]])  # [KVH=1, T=3, D=2]
    key_pos = torch.tensor([5, 0, 9])  # cache order is not position order
    query = torch.tensor([[[1.0, 0.0]]])  # [H=1, n=1, D=2] at position 6: sees positions 5 and 0
    weights = attention_weights(query, keys, torch.tensor([6]), key_pos)[0, 0]
    expected = torch.softmax(torch.tensor([0.0, 1.0]) / 2**0.5, dim=0)
    assert weights[2] == 0.0
    assert torch.allclose(weights[:2], expected)


def thoughts() -> list[Thought]:
    spans = [(0, 8, R), (8, 16, T), (16, 24, E), (24, 32, T)]
    return [Thought(s, e, kind, 0.0, list(range(s, e))) for s, e, kind in spans]


def test_eviction_takes_transitions_first_progressively_then_execution() -> None:
    scores = {p: float(p % 8) for p in range(32)}  # inside each thought, earlier tokens matter less
    plan = thoughts()
    gone = plan_eviction(plan, 8, scores, min_keep=2)
    # both transitions halved, the older first, their least-attended tokens first
    assert gone == [8, 9, 10, 11, 24, 25, 26, 27]
    gone = plan_eviction(plan, 20, scores, min_keep=2)
    # transitions to a quarter (2 each), then to nothing; execution halved, quartered, held at
    # min_keep; then reasoning halved and quartered
    assert gone == [12, 13, 28, 29, 14, 15, 30, 31, 16, 17, 18, 19, 20, 21, 0, 1, 2, 3, 4, 5]
    assert [t.kept for t in plan] == [[6, 7], [], [22, 23], []]


def test_eviction_stops_at_the_floors() -> None:
    plan = thoughts()
    gone = plan_eviction(plan, 100, {}, min_keep=2)
    assert len(gone) == 32 - 2 - 2  # reasoning and execution keep min_keep, transitions nothing
    assert len(set(gone)) == len(gone)
    assert generated_budget(10, 0.75) == 3 and generated_budget(10, 0.0) == 10


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_effective_bytes_are_the_packed_codes_and_scales(bits: int) -> None:
    layers, heads, dim, group = 30, 3, 64, 32
    one_token = quantize(torch.randn(heads, dim), bits, group).nbytes
    assert token_bytes(bits, layers, heads, dim, group) == 2 * layers * one_token
    assert token_bytes(FULL_BITS, layers, heads, dim, group) == 2 * layers * heads * dim * 4


def test_keys_quantised_per_channel_keep_an_outlier_channel_from_swamping_the_rest() -> None:
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(20, 3, 64, generator=generator)
    keys[..., 5] += 40.0  # one outlier channel, as real keys have
    by_token, token_bytes_ = quantise_tokens(keys, 4, 32)
    by_channel, channel_bytes = quantise_channels(keys, 4, 32)
    assert by_channel.shape == keys.shape
    error_token = (by_token - keys).abs().mean()
    error_channel = (by_channel - keys).abs().mean()
    assert error_channel < error_token / 4
    # 20 tokens pad to 32 per channel group: 3 heads x 64 channels x (32 codes at 4 bits + scale, zero)
    assert channel_bytes == 3 * 64 * (32 // 2 + 2 + 2)
    assert token_bytes_ == 20 * 3 * (64 // 2 + 2 * (2 + 2))


def test_bad_settings_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="ratio"):
        KVCompression("thinkv", 1.5).validate()
    with pytest.raises(ValueError, match="decode_interval"):
        KVCompression("thinkv", 0.5, decode_interval=8).validate()
    with pytest.raises(ValueError, match="no press"):
        KVCompression("thinkv", 0.5).press()
    with pytest.raises(ValueError, match="bit widths"):
        ThinKVPolicy(execution_bits=3).validate()
    with pytest.raises(ValueError, match="thresholds"):
        ThinKVPolicy(thresholds=(0.9, 0.1)).validate()
    with pytest.raises(ValueError, match="min_len"):
        split_thoughts([1, 2], 0, 2, frozenset(), min_len=3, max_len=2)
    with pytest.raises(ValueError, match="attention mass"):
        attention_sparsity(torch.ones(1, 1, 1), torch.tensor([1]), mass=0.0)


PROMPT = (
    "Solve step by step. Each box holds 6 pencils and Tom has 7 boxes. He gives away 10 pencils. "
    "How many pencils are left? Show every step on its own line."
)


def test_in_the_engine_ratio_zero_is_exact_and_eviction_frees_blocks(engine: Engine) -> None:
    """Three requests batched together: plain, ThinKV at ratio 0, ThinKV at 0.75."""
    wait_for_idle(engine)
    ids = engine.tokenizer.encode(PROMPT)
    params = SamplingParams(temperature=0.0, max_tokens=48, ignore_eos=True)
    done: dict[str, list[int]] = {}
    default = engine.thinkv.policy
    # Thresholds at 0 type every thought a transition, so the 0.75 request evicts at each thought's end.
    engine.thinkv.policy = replace(default, thresholds=(0.0, 0.0))
    try:
        for request_id, compression in (
            ("plain", None),
            ("thinkv-0", KVCompression("thinkv", 0.0)),
            ("thinkv-75", KVCompression("thinkv", 0.75)),
        ):
            engine.submit(
                Request(
                    request_id,
                    ids,
                    params,
                    compression=compression,
                    on_finish=lambda c: done.update({c.request_id: c.token_ids}),
                )
            )
        engine.step()  # admits them: each ThinKV sequence takes the policy in force now
    finally:
        engine.thinkv.policy = default
    block_size = engine.block_manager.block_size
    blocks_saved = 0
    while engine.has_work():
        engine.step()
        seq = engine._seqs.get("thinkv-75")
        if seq is None or not isinstance(seq.kv_state, ThinKVSequence):
            continue
        held = len(seq.block_table)
        assert held == -(-seq.num_cached_tokens // block_size)
        assert sorted(seq.kv_state.thinkv.positions)[: len(ids)] == list(range(len(ids)))  # the prompt stays
        assert len(set(seq.kv_state.thinkv.positions)) == seq.num_cached_tokens
        blocks_saved = max(blocks_saved, -(-seq.num_computed_tokens // block_size) - held)
    assert done["thinkv-0"] == done["plain"]
    assert blocks_saved >= 1
    zero, squeezed = engine.thinkv.report("thinkv-0"), engine.thinkv.report("thinkv-75")
    assert zero is not None and squeezed is not None
    assert zero.thoughts and zero.tokens_evicted == 0 and zero.effective_bytes == zero.full_bytes
    assert squeezed.tokens_evicted > 0
    assert squeezed.effective_bytes < 0.5 * squeezed.full_bytes
    assert engine.stats().kv_blocks_used == 0


def test_eviction_moves_tail_tokens_into_the_freed_slots_and_returns_blocks(engine: Engine) -> None:
    """No model step: a sequence of 4 prompt + 60 generated tokens whose cached keys hold their
    position, six typed thoughts; evicting to a quarter must leave every kept key in place under its
    position and give the emptied blocks back."""
    wait_for_idle(engine)
    bm, cache, runner = engine.block_manager, engine.kv_cache, engine.thinkv
    seq = Sequence(
        Request("evict-slots", [1, 2, 3, 4], SamplingParams(temperature=0.0)),
        IncrementalDetokenizer(engine.tokenizer, []),
        None,
    )
    seq.token_ids += [5] * 60
    seq.num_computed_tokens = 64
    assert bm.grow(seq, 64)
    kvh, dim = cache.layers[0][0].shape[2:]
    marked = [torch.arange(64.0)[None, :, None].expand(kvh, 64, dim)] * len(cache.layers)
    cache.write(seq.block_table, 0, 64, marked, marked)
    state = ThinKVState(ThinKVPolicy(), 0.75, 4, started=True)
    state.track(64, 0, 1)
    kinds = [T, E, R, T, E, R]
    state.thoughts = [
        Thought(s, s + 10, k, 0.0, list(range(s, s + 10)))
        for s, k in zip(range(4, 64, 10), kinds, strict=True)
    ]
    seq.kv_state = ThinKVSequence(runner, KVCompression("thinkv", 0.75), state)
    free_before = bm.num_free
    try:
        runner.evict(seq, transition=True)
        kept = 64 - 45  # budget: ceil(60 * 0.25) = 15 generated tokens, plus the prompt
        assert seq.num_evicted == 45 and seq.num_cached_tokens == len(state.positions) == kept
        assert len(seq.block_table) == 2 and bm.num_free == free_before + 2
        keys, values = cache.read(seq.block_table, kept)
        expected = torch.tensor(state.positions, dtype=torch.float)
        for k, v in zip(keys, values, strict=True):
            assert torch.equal(k[:, :, 0], expected.expand(kvh, kept))
            assert torch.equal(v[:, :, 0], expected.expand(kvh, kept))
        assert state.positions[:4] == [0, 1, 2, 3]
        by_thought = [len(t.kept) for t in state.thoughts]
        assert by_thought == [0, 2, 5, 0, 2, 6]  # transitions gone, execution at min_keep, reasoning cut
    finally:
        bm.free(seq)


def test_the_server_runs_thinkv_and_refuses_a_decode_interval_for_it(server_url: str, engine: Engine) -> None:
    body = {
        "model": engine.model_name,
        "messages": [{"role": "user", "content": "What is 7 times 6? Think step by step."}],
        "max_tokens": 24,
        "temperature": 0,
        "kv_compression": {"method": "thinkv", "ratio": 0.5},
    }
    response = httpx.post(f"{server_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    assert engine.thinkv.report(response.json()["id"]) is not None
    body["kv_compression"] = {"method": "thinkv", "ratio": 0.5, "decode_interval": 8}
    response = httpx.post(f"{server_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    assert "decode_interval" in response.json()["error"]["message"]
