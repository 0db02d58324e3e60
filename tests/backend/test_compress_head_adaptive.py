"""Head-adaptive budgets: the KV heads of a layer share its budget unevenly, the layer keeps exactly the
uniform total, and the slots a head does not hold are masked out of attention (garbage there changes
nothing)."""

from __future__ import annotations

import torch

from precog.backend import Engine, Request, SamplingParams
from precog.backend.compress import KnormPress, KVCompression, LayerInputs
from precog.backend.engine.sequence import Sequence
from tests.backend.conftest import press_state, wait_for_idle

REPEATED = "Repeat after me.\n" + "The quick brown fox jumps over the lazy dog.\n" * 12


def knorm_inputs(norms: list[list[float]]) -> LayerInputs:
    """Keys [KVH, T, 2] with the given norms; K-norm needs nothing else."""
    norm = torch.tensor(norms)
    keys = torch.stack([norm, torch.zeros_like(norm)], dim=-1)
    return LayerInputs(
        keys=keys,
        values=keys,
        hidden=torch.zeros(1, 2),
        q_weight=torch.zeros(2, 2),
        q_bias=None,
        cos=torch.ones(4, 2),
        sin=torch.zeros(4, 2),
        num_heads=2,
    )


def test_head_adaptive_selection_shares_the_layer_budget_by_score() -> None:
    # Head 0 has the 5 lowest norms of the layer (best K-norm scores), head 1 the worst but one.
    inputs = knorm_inputs([[1, 2, 3, 9, 4, 5, 9, 9], [9, 9, 9, 0.5, 9, 9, 9, 9]])
    protected = torch.zeros(8, dtype=torch.bool)
    press = KnormPress(compression_ratio=0.5)  # 4 per head uniformly, 8 in the layer
    kept, counts = press.select_head_adaptive(inputs, protected, floor_share=0.5)  # floor: 2 each
    assert counts.tolist() == [5, 3] and int(counts.sum()) == 2 * 4
    assert kept[0].tolist() == [0, 1, 2, 4, 5]
    assert kept[1, :3].tolist() == [0, 1, 3]  # its best (0.5) and, by the stable order, the first ties
    protected[7] = True  # a protected token is kept by every head inside its floor
    kept, counts = press.select_head_adaptive(inputs, protected, floor_share=0.5)
    assert int(counts.sum()) == 8 and all(7 in kept[h, : counts[h]].tolist() for h in range(2))
    assert press.select(inputs, protected).shape == (2, 4)


def compress_one_step(
    engine: Engine, request_id: str, ids: list[int], logits: list[torch.Tensor]
) -> Sequence:
    params = SamplingParams(temperature=0.0, max_tokens=6)
    compression = KVCompression("knorm", 0.5, head_adaptive=True)
    engine.submit(Request(request_id, ids, params, compression=compression, on_logits=logits.append))
    engine.step()
    (seq,) = [s for s in engine.scheduler.running if s.request_id == request_id]
    return seq


def test_head_adaptive_keeps_the_total_budget_and_masks_the_rest(engine: Engine) -> None:
    wait_for_idle(engine)
    ids = engine.tokenizer.encode(REPEATED)
    n_kept = int(len(ids) * 0.5)
    runs: list[list[torch.Tensor]] = []
    for garbage in (False, True):
        logits: list[torch.Tensor] = []
        seq = compress_one_step(engine, f"adaptive-{garbage}", ids, logits)
        head_valid = press_state(seq).kv_head_valid
        assert head_valid is not None
        width = head_valid[0].shape[1]
        assert seq.num_cached_tokens == width and len(seq.block_table) == -(
            -width // engine.config.block_size
        )
        assert all(int(valid.sum()) == valid.shape[0] * n_kept for valid in head_valid)
        assert any(len(set(valid.sum(-1).tolist())) > 1 for valid in head_valid)  # really uneven
        assert width > n_kept
        if garbage:  # what sits in a head's unheld slots must not matter
            slots = engine.kv_cache.slots(seq.block_table, 0, width)
            for (k_cache, v_cache), valid in zip(engine.kv_cache.layers, head_valid, strict=True):
                for cache in (k_cache, v_cache):
                    flat = cache.view(-1, *cache.shape[2:])
                    heads, index = (~valid).nonzero(as_tuple=True)
                    flat[slots[index], heads] = 1e3
        while engine.has_work():
            engine.step()
        runs.append(logits)
    torch.testing.assert_close(torch.stack(runs[1]), torch.stack(runs[0]))
    wait_for_idle(engine)
