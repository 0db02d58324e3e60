"""Block manager and detokenizer rules, checked directly (no model forward needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from precog.backend.engine.block_manager import BlockManager, chain_hash
from precog.backend.engine.detokenizer import IncrementalDetokenizer
from precog.backend.engine.sequence import Request, Sequence
from precog.backend.sampling_params import SamplingParams


def make_seq(tokens: list[int]) -> Sequence:
    return Sequence(Request("r", tokens, SamplingParams()), detokenizer=None, generator=None)  # type: ignore[arg-type]


def computed(bm: BlockManager, tokens: list[int]) -> Sequence:
    """A sequence whose tokens all have KV (as after its prefill), registered in the prefix cache."""
    seq = make_seq(tokens)
    assert bm.grow(seq, len(tokens))
    seq.num_computed_tokens = len(tokens)
    bm.commit(seq)
    return seq


def test_prefix_hits_and_the_last_token_is_always_computed() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    first = computed(bm, list(range(12)))
    hits = bm.cached_prefix(make_seq(list(range(12))))
    assert hits == first.block_table[:2]  # the third block holds the last token: recomputed, not shared
    assert bm.cached_prefix(make_seq([*range(8), 99, 99, 99, 99])) == first.block_table[:2]
    assert bm.cached_prefix(make_seq([0, 1, 2, 99, *range(4, 12)])) == []


def test_a_hash_collision_never_returns_wrong_blocks() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    first = computed(bm, [1, 2, 3, 4, 5])
    other = make_seq([9, 9, 9, 9, 5])
    # Forge a collision: the other prefix's hash points at the first sequence's block.
    bm._by_hash[chain_hash(None, (9, 9, 9, 9))] = first.block_table[0]
    assert bm.cached_prefix(other) == []


def test_freed_blocks_are_revived_until_reused() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    seq = computed(bm, list(range(9)))
    table = list(seq.block_table)
    bm.free(seq)
    assert bm.num_free == 4
    again = make_seq(list(range(9)))
    hits = bm.cached_prefix(again)
    assert hits == table[:2]
    assert bm.can_admit(hits, 9)
    bm.admit(again, hits)
    assert bm.num_free == 2 and again.num_computed_tokens == 8
    bm.free(again)
    # Filling the cache with other tokens reuses the freed blocks and forgets their hashes.
    computed(bm, [50 + i for i in range(16)])
    assert bm.cached_prefix(make_seq(list(range(9)))) == []


def test_shared_blocks_are_reference_counted() -> None:
    bm = BlockManager(num_blocks=6, block_size=4)
    a = computed(bm, list(range(9)))
    b = make_seq(list(range(9)))
    hits = bm.cached_prefix(b)
    bm.admit(b, hits)
    assert bm.grow(b, 9)
    assert [bm.blocks[i].ref_count for i in a.block_table[:2]] == [2, 2]
    bm.free(a)
    assert [bm.blocks[i].ref_count for i in b.block_table[:2]] == [1, 1]
    assert bm.num_free == 6 - 3  # b's two shared blocks and its own third block
    bm.free(b)
    assert bm.num_free == 6


def test_grow_takes_nothing_when_blocks_run_out() -> None:
    bm = BlockManager(num_blocks=2, block_size=4)
    seq = make_seq(list(range(12)))
    assert not bm.grow(seq, 12)
    assert seq.block_table == [] and bm.num_free == 2


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(model_dir)


def stream_text(tokenizer, text: str, stop: list[str]) -> tuple[list[str], IncrementalDetokenizer]:  # type: ignore[no-untyped-def]
    detok = IncrementalDetokenizer(tokenizer, stop)
    deltas = []
    for token in tokenizer.encode(text):
        deltas.append(detok.add(token))
        if detok.stopped:
            break
    deltas.append(detok.flush())
    return deltas, detok


def test_deltas_add_up_to_the_text(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "Caf\u00e9 cr\u00e8me \u2014 \U0001f600 done. Ünïcödé ok"
    deltas, detok = stream_text(tokenizer, text, [])
    assert "".join(deltas) == text == detok.text
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_is_cut_and_never_streamed(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "Step one. Step two. END of the answer, more text."
    deltas, detok = stream_text(tokenizer, text, ["END", "never"])
    assert detok.stopped
    assert "".join(deltas) == detok.text == "Step one. Step two. "
    assert not any("E" in d for d in deltas)


def test_text_that_only_looks_like_a_stop_string_is_released(tokenizer) -> None:  # type: ignore[no-untyped-def]
    deltas, detok = stream_text(tokenizer, "an ENDless story", ["END."])
    assert not detok.stopped
    assert "".join(deltas) == "an ENDless story"


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(st.integers(0, 49151), min_size=1, max_size=40))
def test_windowed_decoding_equals_a_full_decode(tokenizer, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    detok = IncrementalDetokenizer(tokenizer, [])
    streamed = "".join(detok.add(t) for t in ids) + detok.flush()
    assert streamed == detok.text == tokenizer.decode(ids, skip_special_tokens=True)
