"""The engine's device setting: weights, KV pages and every tensor of a step live on the engine's device.

No GPU here, so the step is run on PyTorch's "meta" device: shape-only tensors that raise as soon as a
host tensor meets them in arithmetic or an in-place write, which is how a tensor left on the CPU would
fail on CUDA. The forward pass (prefill with an imported KV prefix, then decode) runs through the same
code as on the CPU; sampling copies ids to the host and is left out (meta tensors hold no values).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backend_prompts import QUESTIONS, chat_prompt_ids

from precog.backend import Engine, EngineConfig, Request, SamplingParams
from precog.backend.compress import KVCompression
from precog.backend.engine.request_check import RequestError
from precog.core import ConfigError

META = torch.device("meta")


def test_device_settings_resolve_and_refuse_clearly(model_dir: Path) -> None:
    assert EngineConfig(device="cpu").torch_device() == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert EngineConfig(device="auto").torch_device().type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA device"):
            Engine(EngineConfig(model_dir=model_dir, device="cuda", max_model_len=256, num_kv_blocks=32))
    for clash in ({"attention": "sparse"}, {"kv_compression_method": "snapkv"}):
        with pytest.raises(ValueError, match="device cuda cannot serve"):
            EngineConfig(device="cuda", **clash)


@pytest.fixture(scope="module")
def meta_engine(model_dir: Path) -> Engine:
    patch = pytest.MonkeyPatch()
    patch.setattr(EngineConfig, "torch_device", lambda self: META)
    try:
        return Engine(EngineConfig(model_dir=model_dir, max_model_len=256, num_kv_blocks=32))
    finally:
        patch.undo()


def test_weights_rope_and_pages_live_on_the_engines_device(meta_engine: Engine) -> None:
    assert {p.device for p in meta_engine.model.parameters()} == {META}
    assert meta_engine.model.rope.cos.device == META
    assert {t.device for layer in meta_engine.kv_cache.layers for t in layer} == {META}


def test_a_step_runs_on_the_engines_device(meta_engine: Engine, engine: Engine) -> None:
    prompt = chat_prompt_ids(engine.tokenizer, QUESTIONS[0])
    blob = engine.export_kv(prompt[:16])  # a host blob, as the KV server hands it over
    request = Request("on-device", prompt, SamplingParams(temperature=0.0, max_tokens=4), kv_prefix=blob)
    meta_engine.submit(request)
    meta_engine._drain_inbox()
    for _ in range(2):  # prefill of the rest of the prompt, then one decode step
        batch = meta_engine.scheduler.schedule()
        sampled, logits = meta_engine.runner.run(batch)
        meta_engine.scheduler.update(batch)
        assert logits.device == META and tuple(logits.shape) == (1, meta_engine.spec.vocab_size)
        sampled[0].token_ids.append(42)  # what the output processor does with the sampled id


def test_cpu_only_features_are_refused_on_another_device(meta_engine: Engine) -> None:
    prompt = chat_prompt_ids(meta_engine.tokenizer, QUESTIONS[1])
    with pytest.raises(RequestError, match="kv_compression runs on the cpu device only"):
        meta_engine.check_request(prompt, SamplingParams(), compression=KVCompression("snapkv", 0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_check.sh runs it)")
@pytest.mark.parametrize("settings", [{}, {"attention_backend": "kernels"}, {"kv_dtype": "int8"}])
def test_the_engine_generates_on_cuda_like_on_the_cpu(
    engine: Engine, model_dir: Path, settings: dict[str, str]
) -> None:
    cuda = Engine(
        EngineConfig(model_dir=model_dir, device="cuda", max_model_len=512, num_kv_blocks=256, **settings)
    )
    assert {p.device.type for p in cuda.model.parameters()} == {"cuda"}
    prompts = [chat_prompt_ids(engine.tokenizer, q) for q in QUESTIONS[:8]]
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    on_cpu = [c.token_ids for c in engine.generate(prompts, params)]
    on_cuda = [c.token_ids for c in cuda.generate(prompts, params)]
    same_first = sum(a[0] == b[0] for a, b in zip(on_cpu, on_cuda, strict=True))
    print(f"cuda {settings or 'defaults'} vs cpu: same first token {same_first}/8")
    assert same_first >= 7
    blob = cuda.export_kv(prompts[0])
    assert blob.keys[0].device.type == "cpu"
