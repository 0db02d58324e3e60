"""Each press's kept-token set on hand-checkable layer inputs (no model needed), and the shared rules
every press obeys: budget, protected positions, sorted unique indices."""

from __future__ import annotations

import math

import pytest
import torch

from precog.backend import EngineConfig
from precog.backend.compress import (
    PRESSES,
    ExpectedAttentionPress,
    KnormPress,
    KVCompression,
    LayerInputs,
    RandomPress,
    ScorerPress,
    SnapKVPress,
    StreamingLLMPress,
)


def layer_inputs(
    keys: torch.Tensor, values: torch.Tensor | None = None, hidden: torch.Tensor | None = None, heads: int = 1
) -> LayerInputs:
    """keys [KVH, T, D]; the query projection is the identity (hidden size D x heads) and RoPE is off
    (cos 1, sin 0), so queries equal hidden states and logits can be worked out by hand."""
    _, t, d = keys.shape
    return LayerInputs(
        keys=keys,
        values=torch.ones_like(keys) if values is None else values,
        hidden=torch.zeros(t, d * heads) if hidden is None else hidden,
        q_weight=torch.eye(d * heads),
        q_bias=None,
        cos=torch.ones(4096, d),
        sin=torch.zeros(4096, d),
        num_heads=heads,
    )


def kept(press: ScorerPress, inputs: LayerInputs, protected: torch.Tensor | None = None) -> list[list[int]]:
    mask = torch.zeros(inputs.num_tokens, dtype=torch.bool) if protected is None else protected
    return press.select(inputs, mask).tolist()


def test_streaming_llm_keeps_exactly_sinks_and_window() -> None:
    inputs = layer_inputs(torch.randn(2, 20, 4))
    # 20 tokens at ratio 0.5 keep 10: the 4 sinks and the last 6.
    expected = [0, 1, 2, 3, 14, 15, 16, 17, 18, 19]
    assert kept(StreamingLLMPress(compression_ratio=0.5), inputs) == [expected, expected]


def test_knorm_keeps_the_lowest_norm_keys() -> None:
    norms = torch.tensor([5.0, 1.0, 4.0, 0.5, 3.0, 2.0])
    keys = norms[None, :, None] * torch.nn.functional.normalize(torch.randn(1, 6, 8), dim=-1)
    assert kept(KnormPress(compression_ratio=0.5), layer_inputs(keys)) == [[1, 3, 5]]


def test_expected_attention_keeps_the_key_aligned_with_the_mean_query() -> None:
    d = 4
    keys = torch.zeros(1, 8, d)
    keys[0, :, 1] = 1.0  # every key points along e1...
    keys[0, 6] = torch.tensor([3.0, 0.0, 0.0, 0.0])  # ...but key 6 along the queries' direction e0
    hidden = torch.zeros(8, d)
    hidden[:, 0] = 2.0  # every future query is 2·e0 (no spread)
    inputs = layer_inputs(keys, hidden=hidden)
    # 8 tokens at ratio 0.375 keep 5: the 4 sinks and key 6.
    assert kept(ExpectedAttentionPress(compression_ratio=0.375), inputs) == [[0, 1, 2, 3, 6]]


def test_expected_attention_weights_equal_logits_by_value_norm() -> None:
    keys = torch.zeros(1, 8, 4)
    values = torch.ones(1, 8, 4)
    values[0, 5] *= 3.0  # same expected attention everywhere; token 5 carries the largest value
    inputs = layer_inputs(keys, values=values)
    assert kept(ExpectedAttentionPress(compression_ratio=0.375), inputs) == [[0, 1, 2, 3, 5]]


def test_expected_attention_averages_query_heads_of_a_kv_group() -> None:
    d = 2
    keys = torch.zeros(1, 8, d)
    keys[0, 4] = torch.tensor([4.0, 0.0])  # what query head 0 looks for
    keys[0, 7] = torch.tensor([0.0, 1.0])  # weakly what head 1 looks for
    hidden = torch.zeros(8, 2 * d)
    hidden[:, 0] = 1.0  # head 0's queries: e0
    hidden[:, 3] = 1.0  # head 1's queries: e1
    inputs = layer_inputs(keys, hidden=hidden, heads=2)
    assert kept(ExpectedAttentionPress(compression_ratio=0.375, n_sink=4), inputs) == [[0, 1, 2, 3, 4]]


def test_snapkv_keeps_what_the_observation_window_attends_to() -> None:
    d = 4
    keys = torch.zeros(1, 12, d)
    keys[0, 2] = torch.tensor([5.0, 0.0, 0.0, 0.0])
    hidden = torch.zeros(12, d)
    hidden[:, 0] = 2.0
    press = SnapKVPress(compression_ratio=0.5, window_size=4, kernel_size=1)
    # 12 tokens keep 6: the 4-token window (8..11), key 2, then the first-best of the uniform rest.
    selected = kept(press, layer_inputs(keys, hidden=hidden))[0]
    assert {2, 8, 9, 10, 11} <= set(selected) and len(selected) == 6


def test_random_press_is_repeatable_with_its_seed() -> None:
    inputs = layer_inputs(torch.randn(3, 40, 4))
    first = kept(RandomPress(compression_ratio=0.5, seed=7), inputs)
    assert first == kept(RandomPress(compression_ratio=0.5, seed=7), inputs)
    assert first != kept(RandomPress(compression_ratio=0.5, seed=8), inputs)


@pytest.mark.parametrize("method", sorted(PRESSES))
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.9])
def test_every_press_keeps_its_budget_and_the_protected_positions(method: str, ratio: float) -> None:
    torch.manual_seed(0)
    t = 80
    inputs = layer_inputs(torch.randn(3, t, 8), torch.randn(3, t, 8), torch.randn(t, 24), heads=3)
    protected = torch.zeros(t, dtype=torch.bool)
    protected[30:35] = True  # an instruction in the middle of the prompt
    press = PRESSES[method](compression_ratio=ratio)
    selected = press.select(inputs, protected)
    assert selected.shape == (3, max(int(t * (1 - ratio)), 5))
    for head in selected.tolist():
        assert head == sorted(set(head)) and head[0] >= 0 and head[-1] < t
        assert set(range(30, 35)) <= set(head)


def test_protection_beyond_the_budget_keeps_every_protected_position() -> None:
    protected = torch.zeros(20, dtype=torch.bool)
    protected[2:12] = True
    selected = kept(KnormPress(compression_ratio=0.9), layer_inputs(torch.randn(1, 20, 4)), protected)
    assert selected == [list(range(2, 12))]


@pytest.mark.parametrize("ratio", [-0.1, 1.0])
def test_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="compression ratio"):
        KnormPress(compression_ratio=ratio)
    with pytest.raises(ValueError, match="ratio"):
        KVCompression("knorm", ratio).validate()


def test_bad_request_options_name_the_field() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        KVCompression("h2o", 0.5).validate()
    with pytest.raises(ValueError, match="protected range"):
        KVCompression("knorm", 0.5, ((5, 5),)).validate()


def test_engine_config_default_compression() -> None:
    assert EngineConfig().kv_compression() is None
    config = EngineConfig(kv_compression_method="snapkv", kv_compression_ratio=0.25)
    assert config.kv_compression() == KVCompression("snapkv", 0.25)
    with pytest.raises(ValueError, match="kv_compression_ratio"):
        EngineConfig(kv_compression_method="snapkv", kv_compression_ratio=1.0)


@pytest.mark.parametrize("use_vnorm", [False, True])
def test_expected_attention_scores_follow_the_formula(use_vnorm: bool) -> None:
    # d = 2, RoPE off, W_q = I. The rows after the 4 sinks, h = (1, 1) and (3, 1), give μ = (2, 1) and the
    # population covariance Σ = diag(1, 0); the sinks' huge rows must not count. Expected logit of key k:
    # μ·k/√d + ½·kᵀΣk/d, then a softmax over the non-sink keys, then (· + ε)·‖v‖ (kvpress's formula).
    d = 2
    keys = torch.tensor([[[9.0, 9.0]] * 4 + [[2.0, 0.0], [0.0, 2.0]]])
    values = torch.tensor([[[1.0, 0.0]] * 4 + [[3.0, 4.0], [0.0, 2.0]]])
    hidden = torch.tensor([[100.0, -100.0]] * 4 + [[1.0, 1.0], [3.0, 1.0]])
    logits = [(2 * 2 + 0) / math.sqrt(d) + 0.5 * 4 / d, (0 + 1 * 2) / math.sqrt(d) + 0.0]
    probs = torch.softmax(torch.tensor(logits), dim=0)
    expected = probs * torch.tensor([5.0, 2.0]) if use_vnorm else probs
    press = ExpectedAttentionPress(compression_ratio=0.5, use_vnorm=use_vnorm)
    scores = press.score(layer_inputs(keys, values=values, hidden=hidden))[0]
    assert torch.allclose(scores[4:], expected, rtol=1e-5, atol=1e-7), (scores, expected)
    assert bool((scores[:4] == expected.max() + 1).all())  # sinks strictly above every scored token


def test_snapkv_window_outranks_every_scored_token() -> None:
    # The budget (3 of 12) is below the 4-token window: kvpress keeps window tokens only, even though
    # key 2 draws the strongest attention of the earlier keys.
    keys = torch.zeros(1, 12, 4)
    keys[0, 2] = torch.tensor([5.0, 0.0, 0.0, 0.0])
    hidden = torch.zeros(12, 4)
    hidden[:, 0] = 2.0
    press = SnapKVPress(compression_ratio=0.75, window_size=4, kernel_size=1)
    inputs = layer_inputs(keys, hidden=hidden)
    scores = press.score(inputs)[0]
    assert scores[8:].min() > scores[:8].max()  # strictly above: no top-k tie with key 2
    assert set(kept(press, inputs)[0]) <= {8, 9, 10, 11}
