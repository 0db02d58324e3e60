"""The parts of sparse attention on their own: the page bound, the selection rule and the fast tier."""

from __future__ import annotations

import pytest
import torch

from precog.backend import EngineConfig
from precog.backend.sparse import FastTier, SparseAttention, SparseSettings, page_upper_bounds, select_pages
from precog.kernels import paged_attention_ref


def test_page_upper_bound_is_at_least_every_score_in_the_page() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        b, kvh, g, d, m, bs = 2, 3, 3, 16, 5, 1 + trial % 8
        q = torch.randn(b, kvh, g, d, generator=gen) * (1 + trial)
        keys = torch.randn(b, m, bs, kvh, d, generator=gen) * (1 + trial % 3)
        heads_first = (keys.amin(dim=2).permute(2, 0, 1, 3), keys.amax(dim=2).permute(2, 0, 1, 3))
        bounds = page_upper_bounds(q, *heads_first)  # [b, KVH, G, M]
        scores = torch.einsum("bhgd,bmthd->bhgmt", q, keys).amax(dim=-1)  # true max per page
        assert bool((bounds >= scores - 1e-4).all())
        if bs == 1:  # a one-key page: the bound is that key's score
            torch.testing.assert_close(bounds, scores, rtol=1e-5, atol=1e-4)


def test_selection_keeps_sink_and_recent_pages_then_the_highest_bounds() -> None:
    bounds = torch.zeros(2, 1, 2, 8)
    bounds[0, 0, 0, 3] = 5.0  # one head of the group ranks page 3 first, the other page 5
    bounds[0, 0, 1, 5] = 4.0
    bounds[1, 0, :, 1] = 9.0  # page 1 of a three-page sequence
    chosen = select_pages(bounds, torch.tensor([8, 3]), budget_pages=4, sink_pages=1)
    assert chosen.pages[0, 0].tolist() == [0, 3, 5, 7]
    assert chosen.pages[1, 0].tolist() == [0, 1, 2, 8]  # all three pages, then padding (M = 8)
    assert chosen.counts.tolist() == [[4], [3]]


def _large(num_blocks: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(num_blocks, 4, 2, 8, generator=gen), torch.randn(num_blocks, 4, 2, 8, generator=gen)


def _page(cache: torch.Tensor, block: int) -> torch.Tensor:
    return cache[block].transpose(0, 1)  # [KVH, B, D], the fast tier's layout


def test_fast_tier_loads_misses_in_one_gather_and_counts_hits() -> None:
    large = _large()
    tier = FastTier(4, num_layers=2, num_blocks=12, num_kv_heads=2, block_size=4, head_dim=8)
    k, v, index = tier.fetch(1, torch.tensor([1, 2, 3]), large)
    assert (tier.stats.lookups, tier.stats.hits, tier.stats.pages_loaded, tier.stats.gathers) == (3, 0, 3, 1)
    for block, slot in zip([1, 2, 3], index.tolist(), strict=True):
        assert torch.equal(k[slot], _page(large[0], block)) and torch.equal(v[slot], _page(large[1], block))
    _, _, again = tier.fetch(1, torch.tensor([2, 3, 5]), large)
    assert (tier.stats.hits, tier.stats.pages_loaded, tier.stats.gathers) == (2, 4, 2)
    assert again[:2].tolist() == index[1:].tolist()
    # The same block of another layer is a miss; the tier is full, so it takes the least recently used
    # page (layer 1's block 1).
    _, _, other_layer = tier.fetch(0, torch.tensor([2]), large)
    assert (tier.stats.hits, tier.stats.pages_loaded, tier.stats.gathers) == (2, 5, 3)
    assert other_layer.tolist() == index[:1].tolist() and tier.resident == 4
    # Two misses evict the two least recently used pages outside the selection (layer 1's 2 and 5).
    k, _, last = tier.fetch(1, torch.tensor([3, 7, 8]), large)
    assert (tier.stats.hits, tier.stats.pages_loaded, tier.stats.gathers) == (3, 7, 4)
    assert last[0] == again[1] and set(last[1:].tolist()) == {index[1].item(), again[2].item()}
    assert torch.equal(k[last[2]], _page(large[0], 8))
    assert int(other_layer[0]) not in last.tolist()


def test_fast_tier_write_through_invalidate_and_overflow() -> None:
    large = _large()
    tier = FastTier(2, num_layers=1, num_blocks=12, num_kv_heads=2, block_size=4, head_dim=8)
    k, _, index = tier.fetch(0, torch.tensor([4]), large)
    new_k, new_v = torch.ones(2, 2, 8), torch.full((2, 2, 8), 2.0)
    slots = torch.tensor([4 * 4 + 1, 9 * 4])  # block 4 offset 1 (resident), block 9 (not resident)
    large[0].view(-1, 2, 8)[slots] = new_k
    tier.write_through(0, slots, new_k, new_v)
    assert torch.equal(k[index[0]], _page(large[0], 4))
    assert torch.equal(tier.v[index[0], :, 1], new_v[0])
    tier.invalidate(torch.tensor([4]))
    assert tier.resident == 0
    k3, _, where = tier.fetch(0, torch.tensor([1, 2, 3]), large)  # more than the tier holds
    assert tier.stats.overflows == 1 and tier.stats.pages_loaded == 4 and tier.stats.gathers == 2
    for i, block in enumerate([1, 2, 3]):
        assert torch.equal(k3[where[i]], _page(large[0], block))


def test_settings_reject_a_budget_without_room_for_sink_and_recent_pages() -> None:
    with pytest.raises(ValueError, match="sparse_budget_tokens"):
        EngineConfig(attention="sparse", sparse_budget_tokens=16, block_size=16)
    with pytest.raises(ValueError, match="budget_pages"):
        SparseSettings(budget_pages=2, sink_pages=2)
    assert EngineConfig(attention="sparse", sparse_budget_tokens=17, block_size=16).attention == "sparse"
    assert EngineConfig().attention == "dense"


def test_sparse_decode_is_the_same_from_any_fast_tier_and_dense_at_full_budget() -> None:
    """Synthetic caches: the selected pages' attention does not depend on where they were served from
    (a roomy tier, a tier that must evict, a tier too small for one step), and a budget that covers
    every page is dense attention."""
    gen = torch.Generator().manual_seed(2)
    blocks, bs, kvh, d = 40, 4, 2, 8
    k_cache, v_cache = (
        torch.randn(blocks, bs, kvh, d, generator=gen),
        torch.randn(blocks, bs, kvh, d, generator=gen),
    )
    tables = torch.randperm(blocks, generator=gen)[:30].view(3, 10)
    lens = torch.tensor([37, 9, 22])
    q, other = torch.randn(3, kvh * 3, d, generator=gen), torch.randn(3, kvh * 3, d, generator=gen) * 3

    def decode(budget: int, capacity: int) -> tuple[torch.Tensor, SparseAttention]:
        """q, another query (other pages), q again: the last answer, which must equal the first."""
        sparse = SparseAttention(SparseSettings(budget, 1, capacity), 1, blocks, kvh, bs, d)
        sparse.rewritten(list(range(blocks)), [(k_cache, v_cache)])
        outs = [sparse.decode(0, query, (k_cache, v_cache), tables, lens, 0.3) for query in (q, other, q)]
        torch.testing.assert_close(outs[0], outs[-1])
        return outs[-1], sparse

    roomy, sparse = decode(3, 64)
    assert sparse.tier_stats.hits > 0 and sparse.tier_stats.overflows == 0
    evicting, sparse = decode(3, 11)
    assert sparse.tier_stats.overflows == 0 and sparse.tier_stats.pages_loaded > 11
    overflowing, sparse = decode(3, 4)
    assert sparse.tier_stats.overflows == 3
    torch.testing.assert_close(evicting, roomy)
    torch.testing.assert_close(overflowing, roomy)
    full, _ = decode(10, 64)
    dense = paged_attention_ref(q, k_cache, v_cache, tables, lens, 0.3).out
    torch.testing.assert_close(full, dense)
    assert (roomy - dense).abs().max() > 1e-3
