"""Protected positions keep their KV through compression, and decode-time compaction (every N decode
tokens) keeps generating, frees blocks and still keeps them; the cache always holds the full
prefill's K/V at the positions the engine says it kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from precog.backend import Completion, Engine, Request, SamplingParams
from precog.backend.compress import KVCompression
from precog.backend.engine.sequence import Sequence
from tests.backend.conftest import press_state, wait_for_idle

REPEATED = "Repeat after me.\n" + "The quick brown fox jumps over the lazy dog.\n" * 12


@contextmanager
def compressed(engine: Engine, request: Request) -> Iterator[Sequence]:
    """The request's sequence right after its first step; the engine is run dry afterwards even when the
    block fails, so that no half-run sequence is left to the tests that share the engine."""
    engine.submit(request)
    try:
        engine.step()  # the whole prompt fits one step: prefill, compress, first token
        (seq,) = [s for s in engine.scheduler.running if s.request_id == request.request_id]
        yield seq
    finally:
        while engine.has_work():
            engine.step()


def assert_cache_holds(
    engine: Engine, seq: Sequence, full: tuple[list[torch.Tensor], list[torch.Tensor]]
) -> None:
    """Every cached key/value of every layer and head is the full prefill's at its tracked position (up to
    the rounding of a prefill split into other chunks than the full one, when part comes from the prefix
    cache; a wrong position differs by orders of magnitude more)."""
    kv_positions = press_state(seq).kv_positions
    assert kv_positions is not None
    keys, values = engine.kv_cache.read(seq.block_table, seq.num_cached_tokens)
    for k, v, positions, k_full, v_full in zip(keys, values, kv_positions, *full, strict=True):
        index = positions[..., None].expand(-1, -1, k.shape[-1])
        n = positions.shape[1]
        torch.testing.assert_close(k[:, :n], k_full.gather(1, index), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(v[:, :n], v_full.gather(1, index), rtol=1e-4, atol=1e-4)


def test_protected_positions_keep_their_kv_through_compression(engine: Engine) -> None:
    wait_for_idle(engine)
    ids = engine.tokenizer.encode(REPEATED)
    blob = engine.export_kv(ids)
    full = ([k.float() for k in blob.keys], [v.float() for v in blob.values])
    span = (20, 60)  # K-norm at 0.75 drops most of these in some layer and head when unprotected
    params = SamplingParams(temperature=0.0, max_tokens=2)
    lost = []
    for protect in (True, False):
        compression = KVCompression("knorm", 0.75, protected=(span,) if protect else ())
        request = Request(f"protect-{protect}", ids, params, compression=compression)
        with compressed(engine, request) as seq:
            assert_cache_holds(engine, seq, full)
            kv_positions = press_state(seq).kv_positions
            assert kv_positions is not None
            wanted = torch.arange(*span)
            lost.append(sum(int((~torch.isin(wanted, p)).sum()) for p in kv_positions))
    assert lost[0] == 0 and lost[1] > 0


def test_decode_time_compression_keeps_generating_frees_blocks_and_protection(engine: Engine) -> None:
    wait_for_idle(engine)
    ids = engine.tokenizer.encode(REPEATED)
    interval, ratio, max_tokens = 8, 0.5, 26
    compression = KVCompression("expected_attention", ratio, protected=((0, 12),), decode_interval=interval)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    finished: list[Completion] = []
    request = Request("decode-compress", ids, params, compression=compression, on_finish=finished.append)
    before = engine.stats().kv_tokens_evicted
    cached_after, blocks_after = [], []
    with compressed(engine, request) as seq:
        while engine.has_work():
            computed_before = seq.num_computed_tokens
            engine.step()
            state = press_state(seq)
            if state.compressed_at > computed_before and not finished:  # a decode-time compaction ran
                cached_after.append((seq.num_computed_tokens, seq.num_cached_tokens))
                blocks_after.append(len(seq.block_table))
                assert state.kv_positions is not None
                for positions in state.kv_positions:  # the protected prompt positions survive every round
                    assert bool(torch.isin(torch.arange(12), positions).all(dim=-1).all())
    assert len(cached_after) == (max_tokens - 1) // interval
    for computed, cached in cached_after:
        assert cached == int(computed * (1 - ratio))
    block_size = engine.block_manager.block_size
    assert all(
        b == -(-c // block_size) < -(-computed // block_size)
        for b, (computed, c) in zip(blocks_after, cached_after, strict=True)
    )
    assert len(finished[0].token_ids) == max_tokens
    assert finished[0].text.startswith("The quick brown fox jumps over the lazy dog.")
    assert engine.stats().kv_tokens_evicted - before > len(ids) - int(len(ids) * (1 - ratio))
    wait_for_idle(engine)
