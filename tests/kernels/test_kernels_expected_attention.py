"""Expected Attention scores: hand-checked mean, covariance, GQA-averaging and value-norm cases on the
reference, and the Triton logits kernel against it."""

from __future__ import annotations

import math

import pytest
import torch

from precog.kernels import expected_attention_scores, expected_attention_scores_ref


def test_without_query_information_every_key_weighs_its_value_norm():
    tokens, head_dim = 5, 4
    keys = torch.randn(1, 1, tokens, head_dim)
    values = torch.zeros(1, 1, tokens, head_dim)
    values[0, 0, :, 0] = torch.arange(1.0, tokens + 1)  # ‖v_t‖ = t + 1
    scores = expected_attention_scores_ref(keys, values, torch.zeros(1, 2, head_dim), None)
    torch.testing.assert_close(scores, (torch.arange(1.0, tokens + 1) / tokens).view(1, 1, tokens))


def test_covariance_term_is_half_the_key_quadratic_form_over_dim():
    head_dim = 4
    keys = torch.zeros(1, 1, 2, head_dim)
    keys[0, 0, 1, 0] = math.sqrt(2 * head_dim)  # ½·kᵀIk/d = 1 for key 1, 0 for key 0
    values = torch.ones(1, 1, 2, head_dim) / 2  # ‖v‖ = 1
    cov = torch.eye(head_dim).view(1, 1, head_dim, head_dim)
    scores = expected_attention_scores_ref(keys, values, torch.zeros(1, 1, head_dim), cov, epsilon=0.5)
    e = math.e
    torch.testing.assert_close(scores, torch.tensor([[[1 / (1 + e) + 0.5, e / (1 + e) + 0.5]]]))


def test_query_heads_of_a_group_are_averaged():
    head_dim = 4
    keys = torch.eye(head_dim)[:2].view(1, 1, 2, head_dim)  # key 0 = e0, key 1 = e1
    values = keys.clone()
    mean = torch.zeros(1, 2, head_dim)
    mean[0, 0, 0] = mean[0, 1, 1] = 100 * math.sqrt(head_dim)  # head 0 expects key 0, head 1 key 1
    scores = expected_attention_scores_ref(keys, values, mean, None)
    torch.testing.assert_close(scores, torch.tensor([[[0.5, 0.5]]]))


# (batch, query heads, KV heads, tokens, head_dim)
CASES = [
    pytest.param(1, 9, 3, 70, 64, id="smollm2-heads"),
    pytest.param(2, 4, 4, 5, 16, id="mha-few-tokens"),
    pytest.param(1, 8, 2, 33, 32, id="gqa4-partial-tile"),
]


@pytest.mark.parametrize("with_covariance", [True, False])
@pytest.mark.parametrize(("batch", "num_q_heads", "num_kv_heads", "tokens", "head_dim"), CASES)
def test_triton_matches_reference(
    batch, num_q_heads, num_kv_heads, tokens, head_dim, with_covariance, generator, device, triton_available
):
    keys = torch.randn((batch, num_kv_heads, tokens, head_dim), generator=generator).to(torch.bfloat16)
    values = torch.randn((batch, num_kv_heads, tokens, head_dim), generator=generator).to(torch.bfloat16)
    mean = torch.randn((batch, num_q_heads, head_dim), generator=generator)
    spread = torch.randn((batch, num_q_heads, head_dim, head_dim), generator=generator)
    cov = spread @ spread.transpose(-1, -2) / head_dim if with_covariance else None
    inputs = [t.to(device) if t is not None else None for t in (keys, values, mean, cov)]
    kernel = expected_attention_scores(*inputs, epsilon=0.01, backend="triton")
    reference = expected_attention_scores_ref(*inputs, epsilon=0.01)
    assert kernel.shape == (batch, num_kv_heads, tokens)
    torch.testing.assert_close(kernel, reference, rtol=1e-4, atol=1e-6)


def test_rejects_mismatched_statistics():
    keys, values = torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match="mean_query"):
        expected_attention_scores(keys, values, torch.randn(1, 4, 8), None)
    with pytest.raises(ValueError, match="split evenly"):
        expected_attention_scores(keys, values, torch.randn(1, 3, 16), None)
    with pytest.raises(ValueError, match="cov_query"):
        expected_attention_scores(keys, values, torch.randn(1, 4, 16), torch.randn(1, 4, 16, 8))
    with pytest.raises(ValueError, match="keys and values"):
        expected_attention_scores(keys, values[:, :, :5], torch.randn(1, 4, 16), None)
