"""Other checkpoints of the family load through the model_dir setting and match transformers.

Tiny random-weight models cover what SmolLM2 does not use: untied output embeddings, llama3 RoPE
scaling, q/k/v (and o) biases, and the qwen2 family.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PretrainedConfig, Qwen2Config

from precog.backend import Engine, EngineConfig, SamplingParams, UnsupportedModelError

TOL = 1e-4
SMALL = {
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "eos_token_id": 2,
}
CASES = {
    "llama-untied-llama3-rope-bias": LlamaConfig(
        **SMALL,
        tie_word_embeddings=False,
        attention_bias=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ),
    "qwen2-tied": Qwen2Config(**SMALL, tie_word_embeddings=True),
}


def save_checkpoint(config: PretrainedConfig, folder: Path, tokenizer_from: Path) -> AutoModelForCausalLM:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_from / name, folder / name)
    return model


@pytest.mark.parametrize("name", list(CASES))
def test_tiny_checkpoint_matches_transformers(
    name: str, tmp_path: Path, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hf = save_checkpoint(CASES[name], tmp_path, model_dir)
    engine = Engine(
        EngineConfig(model_dir=tmp_path, num_kv_blocks=32, max_num_batched_tokens=64, log_interval_s=1e-3)
    )
    assert engine.model_name == tmp_path.name and engine.max_model_len == 256
    prompt = engine.tokenizer.encode("Paged attention keeps the keys and values in blocks.")
    with caplog.at_level(logging.INFO, logger="precog.backend.engine"):
        [out] = engine.generate(
            [prompt], SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, logprobs=2)
        )
    with torch.inference_mode():
        ids = torch.tensor([prompt + out.token_ids])
        logits = hf(ids).logits[0, len(prompt) - 1 : -1]
    assert out.logprobs is not None
    for step, (token, lp) in enumerate(zip(out.token_ids, out.logprobs, strict=True)):
        reference = torch.log_softmax(logits[step], dim=-1)
        assert abs(lp.logprob - float(reference[token])) < TOL
        top2 = torch.topk(logits[step], 2)
        assert token == int(top2.indices[0]) or float(top2.values[0] - logits[step, token]) < TOL
    throughput = [r for r in caplog.records if r.getMessage() == "engine throughput"]
    assert throughput and {"prefill_tok_s", "decode_tok_s"} <= set(vars(throughput[0]))


def test_unsupported_family_is_refused(tmp_path: Path, model_dir: Path) -> None:
    config = LlamaConfig(**SMALL)
    save_checkpoint(config, tmp_path, model_dir)
    raw = (tmp_path / "config.json").read_text().replace('"llama"', '"gpt2"')
    (tmp_path / "config.json").write_text(raw)
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        Engine(EngineConfig(model_dir=tmp_path))
