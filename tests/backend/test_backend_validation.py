"""Bad settings, sampling values, prompts and KV blobs fail with messages that say what is wrong."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from precog.backend import Engine, EngineConfig, SamplingParams
from precog.core import ConfigError
from precog.store import KVBlob


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SamplingParams(temperature=-0.1), "temperature"),
        (SamplingParams(temperature=2.5), "temperature"),
        (SamplingParams(top_p=0.0), "top_p"),
        (SamplingParams(top_p=1.5), "top_p"),
        (SamplingParams(top_k=-1), "top_k"),
        (SamplingParams(max_tokens=0), "max_tokens"),
        (SamplingParams(seed=-1), "seed"),
        (SamplingParams(stop=[""]), "stop"),
        (SamplingParams(stop=["a", "b", "c", "d", "e"]), "stop"),
        (SamplingParams(logprobs=21), "logprobs"),
        (SamplingParams(logprobs=-1), "logprobs"),
    ],
)
def test_bad_sampling_params(params: SamplingParams, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        params.validate()


def test_good_sampling_params_pass() -> None:
    SamplingParams(temperature=0.0, top_p=0.5, top_k=40, seed=1, stop=["\n"], logprobs=20).validate()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"block_size": 0}, "block_size"),
        ({"num_kv_blocks": 0}, "num_kv_blocks"),
        ({"max_num_seqs": 64, "max_num_batched_tokens": 32}, "max_num_batched_tokens"),
        ({"model_dir": "/nonexistent/model"}, "model_dir"),
        ({"kv_memory_bytes": -1}, "kv_memory_bytes"),
        ({"bogus_setting": 1}, "bogus_setting"),
    ],
)
def test_bad_engine_config(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EngineConfig(**settings)


def test_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECOG_ENGINE_BLOCK_SIZE", "32")
    assert EngineConfig().block_size == 32


def test_limits_that_depend_on_the_model(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        Engine(EngineConfig(model_dir=engine.model_dir, max_model_len=100_000))
    with pytest.raises(ConfigError, match="fewer than max_model_len"):
        Engine(EngineConfig(model_dir=engine.model_dir, max_model_len=1024, num_kv_blocks=8))


def test_a_folder_that_is_no_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"config\.json"):
        Engine(EngineConfig(model_dir=tmp_path))


def test_bad_requests(engine: Engine) -> None:
    ok = SamplingParams(max_tokens=4)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]], ok)
    with pytest.raises(ValueError, match="token ids"):
        engine.generate([[1, 2, 10**6]], ok)
    with pytest.raises(ValueError, match="maximum context length is 1024"):
        engine.generate([[1] * 1000], SamplingParams(max_tokens=100))
    with pytest.raises(ValueError, match="top_p"):
        engine.generate([[1, 2, 3]], SamplingParams(top_p=2.0))
    assert engine.stats().kv_blocks_used == 0


def test_bad_kv_blobs(engine: Engine) -> None:
    prompt = engine.tokenizer.encode("The quick brown fox jumps over the lazy dog")
    blob = engine.export_kv(prompt[:5])
    params = SamplingParams(max_tokens=2)
    wrong_model = KVBlob("another-model", blob.token_ids, blob.keys, blob.values, blob.rope)
    with pytest.raises(ValueError, match="another-model"):
        engine.check_request(prompt, params, wrong_model)
    not_prefix = KVBlob(blob.model, [7] * 5, blob.keys, blob.values, blob.rope)
    with pytest.raises(ValueError, match="not a prefix"):
        engine.check_request(prompt, params, not_prefix)
    narrow = [k[:1] for k in blob.keys]
    with pytest.raises(ValueError, match="shape"):
        engine.check_request(prompt, params, KVBlob(blob.model, blob.token_ids, narrow, narrow, blob.rope))
    rotated = KVBlob(blob.model, blob.token_ids, blob.keys, blob.values, {"theta": 10000.0})
    with pytest.raises(ValueError, match="theta"):
        engine.check_request(prompt, params, rotated)
    engine.check_request(prompt, params, blob)
    assert torch.equal(KVBlob.from_bytes(blob.to_bytes()).keys[3], blob.keys[3])
