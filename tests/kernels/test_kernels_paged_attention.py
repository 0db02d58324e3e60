"""Paged decode attention: the torch reference against dense attention and hand-checkable cases, and the
Triton kernel against the reference on ragged lengths, GQA groups and partial last pages."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kernel_cases import paginate

from precog.kernels import AttentionOutput, merge_attention, paged_attention, paged_attention_ref

# (context lengths, query heads, KV heads, head_dim, block_size)
CASES = [
    pytest.param([5, 16, 1, 33], 4, 4, 16, 8, id="mha-partial-pages"),
    pytest.param([7, 0, 20], 6, 2, 32, 4, id="gqa3-empty-sequence"),
    pytest.param([31, 12], 8, 1, 64, 16, id="mqa8"),
    pytest.param([40], 9, 3, 64, 16, id="smollm2-heads"),
    pytest.param([100, 3], 4, 1, 16, 4, id="long-context-split-over-programs"),
]


def _decode_step(lengths, num_q_heads, num_kv_heads, head_dim, block_size, generator, dtype=torch.float32):
    keys = [torch.randn((n, num_kv_heads, head_dim), generator=generator).to(dtype) for n in lengths]
    values = [torch.randn((n, num_kv_heads, head_dim), generator=generator).to(dtype) for n in lengths]
    (k_cache, v_cache), tables, lens = paginate([keys, values], block_size, generator)
    q = torch.randn((len(lengths), num_q_heads, head_dim), generator=generator).to(dtype)
    return q, k_cache, v_cache, tables, lens, keys, values


@pytest.mark.parametrize(("lengths", "num_q_heads", "num_kv_heads", "head_dim", "block_size"), CASES)
def test_reference_matches_dense_attention(
    lengths, num_q_heads, num_kv_heads, head_dim, block_size, generator
):
    q, k_cache, v_cache, tables, lens, keys, values = _decode_step(
        lengths, num_q_heads, num_kv_heads, head_dim, block_size, generator
    )
    result = paged_attention_ref(q, k_cache, v_cache, tables, lens)
    group = num_q_heads // num_kv_heads
    for s, n in enumerate(lengths):
        if n == 0:
            assert torch.equal(result.out[s], torch.zeros_like(result.out[s]))
            assert torch.isneginf(result.lse[s]).all()
            continue
        k = keys[s].repeat_interleave(group, dim=1).transpose(0, 1)  # [Hq, T, D]
        v = values[s].repeat_interleave(group, dim=1).transpose(0, 1)
        dense = F.scaled_dot_product_attention(q[s][:, None, :], k, v)[:, 0, :]
        torch.testing.assert_close(result.out[s], dense, rtol=1e-5, atol=1e-5)
        scores = torch.einsum("hd,htd->ht", q[s], k) / math.sqrt(head_dim)
        torch.testing.assert_close(result.lse[s], torch.logsumexp(scores, dim=-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("lengths", "num_q_heads", "num_kv_heads", "head_dim", "block_size"), CASES)
def test_triton_matches_reference(
    lengths, num_q_heads, num_kv_heads, head_dim, block_size, dtype, generator, device, triton_available
):
    inputs = _decode_step(lengths, num_q_heads, num_kv_heads, head_dim, block_size, generator, dtype)[:5]
    inputs = tuple(t.to(device) for t in inputs)
    kernel = paged_attention(*inputs, backend="triton")
    reference = paged_attention_ref(*inputs)
    assert kernel.out.dtype == dtype and kernel.out.shape == reference.out.shape
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(kernel.out.float(), reference.out.float(), rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(kernel.lse, reference.lse, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_zero_query_averages_the_values(backend, generator, device, request):
    if backend == "triton":
        request.getfixturevalue("triton_available")
    lengths = [3, 10, 17]
    q, k_cache, v_cache, tables, lens, _, values = _decode_step(lengths, 4, 2, 16, 4, generator)
    q = torch.zeros_like(q)
    result = paged_attention(*(t.to(device) for t in (q, k_cache, v_cache, tables, lens)), backend=backend)
    for s, n in enumerate(lengths):
        expected = values[s].mean(dim=0).repeat_interleave(2, dim=0)  # [Hq, D]: uniform weights 1/n
        torch.testing.assert_close(result.out[s].cpu(), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(result.lse[s].cpu(), torch.full((4,), math.log(n)))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_query_aligned_with_one_key_returns_its_value(backend, generator, device, request):
    if backend == "triton":
        request.getfixturevalue("triton_available")
    head_dim, length, target = 16, 11, 6
    keys = 50.0 * torch.eye(head_dim)[:length, None, :]  # key t = 50·e_t, one KV head
    values = torch.randn((length, 1, head_dim), generator=generator)
    (k_cache, v_cache), tables, lens = paginate([[keys], [values]], 4, generator)
    q = torch.eye(head_dim)[target].expand(1, 2, head_dim).contiguous()  # both query heads pick key 6
    inputs = (t.to(device) for t in (q, k_cache, v_cache, tables, lens))
    result = paged_attention(*inputs, scale=1.0, backend=backend)
    torch.testing.assert_close(result.out[0].cpu(), values[target].expand(2, head_dim), rtol=0, atol=1e-6)


def test_merging_two_halves_of_a_context_equals_attending_over_all_of_it(generator):
    q, k_cache, v_cache, tables, lens, keys, values = _decode_step([23], 6, 2, 16, 4, generator)
    whole = paged_attention_ref(q, k_cache, v_cache, tables, lens)
    halves = []
    for part in (slice(0, 9), slice(9, 23)):
        (k_part, v_part), t_part, l_part = paginate([[keys[0][part]], [values[0][part]]], 4, generator)
        halves.append(paged_attention_ref(q, k_part, v_part, t_part, l_part))
    merged = merge_attention(*halves)
    torch.testing.assert_close(merged.out, whole.out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged.lse, whole.lse, rtol=1e-5, atol=1e-5)


def test_merging_with_an_empty_part_keeps_the_other():
    out = torch.randn(2, 3, 4)
    lse = torch.randn(2, 3)
    empty = AttentionOutput(torch.zeros(2, 3, 4), torch.full((2, 3), float("-inf")))
    merged = merge_attention(AttentionOutput(out, lse), empty)
    torch.testing.assert_close(merged.out, out)
    assert torch.equal(merged.lse, lse)
    both_empty = merge_attention(empty, empty)
    assert torch.equal(both_empty.out, torch.zeros(2, 3, 4)) and torch.isneginf(both_empty.lse).all()


def test_rejects_inputs_that_do_not_describe_a_decode_step(generator):
    q, k_cache, v_cache, tables, lens, _, _ = _decode_step([5, 9], 4, 2, 16, 4, generator)
    num_blocks = k_cache.shape[0]
    bad_page = tables.clone()
    bad_page[1, 0] = num_blocks
    with pytest.raises(ValueError, match="sequence 1"):
        paged_attention(q, k_cache, v_cache, bad_page, lens)
    with pytest.raises(ValueError, match="sequence 0"):
        paged_attention(
            q, k_cache, v_cache, tables, torch.tensor([4 * tables.shape[1] + 1, 9], dtype=torch.int32)
        )
    with pytest.raises(ValueError, match="split evenly"):
        paged_attention(q[:, :3], k_cache, v_cache, tables, lens)
    with pytest.raises(ValueError, match="head_dim"):
        paged_attention(q[:, :, :8], k_cache, v_cache, tables, lens)
    with pytest.raises(ValueError, match="int32 or int64"):
        paged_attention(q, k_cache, v_cache, tables.float(), lens)
    with pytest.raises(ValueError, match="backend"):
        paged_attention(q, k_cache, v_cache, tables, lens, backend="cuda")  # type: ignore[arg-type]
