"""Low-rank (OjaKV) decode attention: rank-space attention against attention over the rebuilt keys and
values, on both backends; the identity-basis case; and merging with the full-rank part of a cache."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import paginate

from precog.kernels import lowrank_attention, lowrank_attention_ref, merge_attention, paged_attention_ref

# (context lengths, query heads, KV heads, head_dim, key rank, value rank, block_size)
CASES = [
    pytest.param([6, 19], 4, 2, 32, 8, 8, 8, id="gqa2-partial-pages"),
    pytest.param([0, 13, 1], 3, 3, 16, 4, 6, 4, id="mha-empty-and-ranks-differ"),
    pytest.param([21], 9, 3, 64, 16, 24, 16, id="smollm2-heads"),
]


def _orthonormal_basis(num_seqs, num_kv_heads, head_dim, rank, generator):
    gaussian = torch.randn((num_seqs, num_kv_heads, head_dim, rank), generator=generator)
    return torch.linalg.qr(gaussian).Q


def _lowrank_step(lengths, num_q_heads, num_kv_heads, head_dim, rank_k, rank_v, block_size, generator):
    coeff_k = [torch.randn((n, num_kv_heads, rank_k), generator=generator) for n in lengths]
    coeff_v = [torch.randn((n, num_kv_heads, rank_v), generator=generator) for n in lengths]
    (k_pages, v_pages), tables, lens = paginate([coeff_k, coeff_v], block_size, generator)
    basis_k = _orthonormal_basis(len(lengths), num_kv_heads, head_dim, rank_k, generator)
    basis_v = _orthonormal_basis(len(lengths), num_kv_heads, head_dim, rank_v, generator)
    q = torch.randn((len(lengths), num_q_heads, head_dim), generator=generator)
    return q, k_pages, v_pages, basis_k, basis_v, tables, lens


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize(
    ("lengths", "num_q_heads", "num_kv_heads", "head_dim", "rank_k", "rank_v", "block_size"), CASES
)
def test_rank_space_attention_matches_attention_over_rebuilt_kv(
    lengths,
    num_q_heads,
    num_kv_heads,
    head_dim,
    rank_k,
    rank_v,
    block_size,
    backend,
    generator,
    device,
    request,
):
    if backend == "triton":
        request.getfixturevalue("triton_available")
    inputs = _lowrank_step(
        lengths, num_q_heads, num_kv_heads, head_dim, rank_k, rank_v, block_size, generator
    )
    inputs = tuple(t.to(device) for t in inputs)
    fast = lowrank_attention(*inputs, backend=backend)
    reference = lowrank_attention_ref(*inputs)
    torch.testing.assert_close(fast.out, reference.out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.lse, reference.lse, rtol=1e-5, atol=1e-5)
    for s, n in enumerate(lengths):
        if n == 0:
            assert torch.isneginf(fast.lse[s]).all() and not fast.out[s].any()


def test_identity_basis_is_plain_paged_attention(generator):
    q, k_pages, v_pages, _, _, tables, lens = _lowrank_step([7, 12], 4, 2, 8, 8, 8, 4, generator)
    identity = torch.eye(8).expand(2, 2, 8, 8)
    lowrank = lowrank_attention_ref(q, k_pages, v_pages, identity, identity, tables, lens)
    paged = paged_attention_ref(q, k_pages, v_pages, tables, lens)
    torch.testing.assert_close(lowrank.out, paged.out)
    torch.testing.assert_close(lowrank.lse, paged.lse)


def test_full_rank_sinks_and_window_merge_with_low_rank_middle(generator):
    """OjaKV's layout: a full-rank part and a low-rank part, merged, equal attention over all tokens."""
    head_dim, rank, num_kv_heads = 16, 4, 1
    basis_k = _orthonormal_basis(1, num_kv_heads, head_dim, rank, generator)
    basis_v = _orthonormal_basis(1, num_kv_heads, head_dim, rank, generator)
    middle_k = torch.randn((10, num_kv_heads, rank), generator=generator)
    middle_v = torch.randn((10, num_kv_heads, rank), generator=generator)
    full_k = torch.randn((6, num_kv_heads, head_dim), generator=generator)
    full_v = torch.randn((6, num_kv_heads, head_dim), generator=generator)
    q = torch.randn((1, 2, head_dim), generator=generator)

    (fk, fv), f_tables, f_lens = paginate([[full_k], [full_v]], 4, generator)
    (mk, mv), m_tables, m_lens = paginate([[middle_k], [middle_v]], 4, generator)
    merged = merge_attention(
        paged_attention_ref(q, fk, fv, f_tables, f_lens),
        lowrank_attention(q, mk, mv, basis_k, basis_v, m_tables, m_lens),
    )
    rebuilt_k = torch.einsum("thr,hdr->thd", middle_k, basis_k[0])
    rebuilt_v = torch.einsum("thr,hdr->thd", middle_v, basis_v[0])
    (ak, av), a_tables, a_lens = paginate(
        [[torch.cat([full_k, rebuilt_k])], [torch.cat([full_v, rebuilt_v])]], 4, generator
    )
    whole = paged_attention_ref(q, ak, av, a_tables, a_lens)
    torch.testing.assert_close(merged.out, whole.out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged.lse, whole.lse, rtol=1e-5, atol=1e-5)


def test_rejects_a_basis_that_does_not_fit_the_pages(generator):
    q, k_pages, v_pages, basis_k, basis_v, tables, lens = _lowrank_step([5], 2, 1, 16, 4, 4, 4, generator)
    with pytest.raises(ValueError, match="basis_k"):
        lowrank_attention(q, k_pages, v_pages, basis_k[..., :3], basis_v, tables, lens)
    with pytest.raises(ValueError, match="basis_v"):
        lowrank_attention(q, k_pages, v_pages, basis_k, basis_v[:, :, :8], tables, lens)
    with pytest.raises(ValueError, match="sequence 0"):
        lowrank_attention(q, k_pages, v_pages, basis_k, basis_v, tables, lens + 100)
