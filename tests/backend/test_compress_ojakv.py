"""OjaKV: the basis maths on hand-checkable data, the cached calibration, and the engine path (middle
tokens as low-rank coefficients in pages of the shared block pool, merged attention, sliding window)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors import safe_open

from precog.backend import Engine, EngineConfig, Request, SamplingParams
from precog.backend.compress import KVCompression, OjaKVSettings, oja_update, rank_for_ratio
from precog.backend.compress.oja import orthonormalise, principal_bases, reconstruction_error
from precog.backend.compress.oja_calibration import load_or_calibrate
from precog.backend.layers.lowrank_attention import coefficient_pages, tokens_per_page
from tests.backend.conftest import wait_for_idle

REPEATED = "Repeat after me.\n" + "The quick brown fox jumps over the lazy dog.\n" * 12


def test_one_oja_step_turns_towards_the_top_direction_by_the_eigenvalue_ratio() -> None:
    """C = diag(4.5, 0.5), so C/‖C‖₂ = diag(1, 1/9): a step with η = 1 maps u ∝ (a, b) to (2a, 10b/9),
    and after k steps from 45° the angle to e₁ has tan θ = (5/9)^k."""
    x = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    u = torch.tensor([[1.0], [1.0]]) / math.sqrt(2)
    for k in range(1, 6):
        u = oja_update(u, x, eta=1.0)
        assert float(u.norm()) == pytest.approx(1.0)
        assert float(u[1, 0] / u[0, 0]) == pytest.approx((5 / 9) ** k, rel=1e-5)


def test_data_in_a_rank_r_subspace_is_found_and_reconstructed_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    subspace = orthonormalise(torch.randn(2, 16, 3, generator=generator))  # two heads, D = 16, r = 3
    x = torch.randn(2, 200, 3, generator=generator) @ subspace.transpose(1, 2)
    vectors, values = principal_bases(x)
    assert torch.all(values[:, 3:] < 1e-6 * values[:, :1])
    assert torch.all(reconstruction_error(x, vectors[..., :3]) < 1e-5)
    start = orthonormalise(torch.randn(2, 16, 3, generator=generator))
    assert torch.all(reconstruction_error(x, start) > 0.3)
    learned = oja_update(start, x, eta=1.0, steps=100)
    assert torch.all(reconstruction_error(x, learned) < 1e-4)
    # A full-rank basis reconstructs anything.
    assert torch.all(reconstruction_error(torch.randn(2, 5, 16, generator=generator), vectors) < 1e-5)


@pytest.mark.parametrize(("ratio", "rank"), [(0.0, 64), (0.25, 48), (0.5, 32), (0.75, 16), (0.9, 6)])
def test_the_ratio_is_the_share_of_a_middle_tokens_bytes_removed(ratio: float, rank: int) -> None:
    assert rank_for_ratio(ratio, 64) == rank


@pytest.mark.parametrize("ratio", [1.0, -0.1])
def test_a_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\)"):
        rank_for_ratio(ratio, 64)
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\)"):
        KVCompression("ojakv", ratio).validate()


def test_ojakv_keeps_its_own_decode_schedule() -> None:
    with pytest.raises(ValueError, match="decode_interval must be 0 for ojakv"):
        KVCompression("ojakv", 0.5, decode_interval=8).validate()


def test_an_ojakv_default_needs_dense_attention() -> None:
    with pytest.raises(ValueError, match="'ojakv' needs attention 'dense'"):
        EngineConfig(attention="sparse", kv_compression_method="ojakv")


def test_coefficient_pages_are_a_view_of_the_full_rank_blocks() -> None:
    cache = torch.zeros(4, 16, 3, 64)
    pages = coefficient_pages(cache, 16)
    assert pages.shape == (4, tokens_per_page(16, 64, 16), 3, 16) == (4, 64, 3, 16)
    pages[2, 63] = 1.0
    assert float(cache[2].sum()) == 3 * 16 and float(cache.sum()) == 3 * 16
    assert coefficient_pages(cache, 6).shape == (4, 170, 3, 6)  # 170 · 3 · 6 <= 16 · 3 · 64


def test_calibration_is_computed_once_then_loaded(tmp_path: Path) -> None:
    calls: list[list[int]] = []
    generator = torch.Generator().manual_seed(1)
    keys = [torch.randn(3, 40, 8, generator=generator) for _ in range(2)]
    values = [torch.randn(3, 40, 8, generator=generator) for _ in range(2)]

    def collect(token_ids: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        calls.append(token_ids)
        return keys, values

    path = tmp_path / "bases" / "pca.safetensors"
    first = load_or_calibrate(path, [1, 2, 3], collect)
    again = load_or_calibrate(path, [1, 2, 3], collect)
    assert calls == [[1, 2, 3]]
    assert torch.equal(first.keys, again.keys) and first.keys.shape == (2, 3, 8, 8)
    assert [p.name for p in path.parent.iterdir()] == ["pca.safetensors"]  # no temporary left behind
    eye = torch.eye(8).expand(2, 3, 8, 8)
    torch.testing.assert_close(first.keys.transpose(-1, -2) @ first.keys, eye, atol=1e-5, rtol=0)
    load_or_calibrate(path, [1, 2, 4], collect)  # other calibration tokens: recomputed, not reused
    assert len(calls) == 2
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == {"keys", "values", "key_eigenvalues", "value_eigenvalues"}


def continuation_logits(
    engine: Engine, ids: list[int], compression: KVCompression | None, n: int
) -> torch.Tensor:
    logits: list[torch.Tensor] = []
    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
    engine.submit(
        Request(f"ojakv-{compression}", ids, params, compression=compression, on_logits=logits.append)
    )
    while engine.has_work():
        engine.step()
    return torch.stack(logits)


def test_full_rank_ojakv_equals_the_uncompressed_cache(engine: Engine) -> None:
    """ratio 0 keeps rank D: the middle tokens go through the coefficient pages, merged attention and one
    window migration with an Oja update and re-projection, and every logit stays the uncompressed one."""
    ids = engine.tokenizer.encode(REPEATED)
    steps = OjaKVSettings().migrate_every + 2
    plain = continuation_logits(engine, ids, None, steps)
    full_rank = continuation_logits(engine, ids, KVCompression("ojakv", 0.0), steps)
    torch.testing.assert_close(full_rank, plain, atol=2e-3, rtol=1e-3)
    wait_for_idle(engine)


def test_ojakv_frees_full_rank_blocks_and_slides_its_window(engine: Engine) -> None:
    """At ratio 0.75 (rank 16: a block holds 64 tokens of coefficients) the prompt's middle tokens move
    to coefficient pages right after the prefill; in decode the window grows by a block, then migrates."""
    wait_for_idle(engine)
    settings = OjaKVSettings()
    ids = engine.tokenizer.encode(REPEATED)
    block_size = engine.block_manager.block_size
    per_page = tokens_per_page(block_size, engine.spec.head_dim, rank_for_ratio(0.75, engine.spec.head_dim))
    fixed, window = settings.n_sink, settings.n_recent
    middle = len(ids) - fixed - window
    steps = settings.migrate_every + 2
    params = SamplingParams(temperature=0.0, max_tokens=steps, ignore_eos=True)
    engine.submit(Request("ojakv-blocks", ids, params, compression=KVCompression("ojakv", 0.75)))
    held: list[int] = []
    while engine.has_work():
        engine.step()
        held.append(engine.stats().kv_blocks_used)
    expected, full_rank, low_rank = [], fixed + window, middle
    for _ in range(steps - 1):  # blocks after each step (the last one finishes the request)
        if full_rank - fixed == window + settings.migrate_every:
            full_rank -= settings.migrate_every
            low_rank += settings.migrate_every
        expected.append(-(-full_rank // block_size) + -(-low_rank // per_page))
        full_rank += 1
    assert held == [*expected, 0]
    assert held[0] < -(-len(ids) // block_size)  # 5 blocks instead of 9


def post(url: str, body: Any, path: str = "/v1/completions") -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=120)


def test_http_requests_choose_ojakv_and_a_bad_ratio_is_a_400(server_url: str, engine: Engine) -> None:
    before = engine.stats()
    body = {"model": engine.model_name, "prompt": REPEATED, "max_tokens": 4, "temperature": 0}
    ok = post(server_url, {**body, "kv_compression": {"method": "ojakv", "ratio": 0.5}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["text"]
    # A chat prompt shorter than sinks + window (nothing goes low rank; its system prompt is protected).
    chat = {"model": engine.model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    short = post(
        server_url, {**chat, "kv_compression": {"method": "ojakv", "ratio": 0.9}}, "/v1/chat/completions"
    )
    assert short.status_code == 200, short.text
    assert engine.stats().kv_compressed_requests == before.kv_compressed_requests + 2
    bad = post(server_url, {**body, "kv_compression": {"method": "ojakv", "ratio": 1.0}})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "kv_compression.ratio"
    interval = post(server_url, {**body, "kv_compression": {"method": "ojakv", "decode_interval": 8}})
    assert interval.status_code == 400 and "decode_interval" in interval.json()["error"]["message"]
    wait_for_idle(engine)
