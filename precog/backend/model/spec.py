"""The shape of a Llama-family checkpoint, read from its Hugging Face config, checked for what we support."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, GenerationConfig, PretrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

# Families that share Llama's block (RoPE, GQA, RMSNorm, SwiGLU); qwen2 adds a bias on q/k/v.
SUPPORTED_TYPES = ("llama", "qwen2")
# RoPE variants whose frequencies do not depend on the sequence length, so one table serves every step.
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn", "longrope")


class UnsupportedModelError(ValueError):
    """The checkpoint is not one this engine implements; the message says which part."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    rope_type: str
    rope_theta: float
    inv_freq: torch.Tensor  # [head_dim / 2]
    rope_attention_scaling: float
    eos_token_ids: frozenset[int]

    def kv_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        """K and V of one token across all layers, in `dtype`."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype.itemsize

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelSpec:
        if not (model_dir / "config.json").is_file():
            raise UnsupportedModelError(f"{model_dir} has no config.json; is it a Hugging Face checkpoint?")
        config = AutoConfig.from_pretrained(model_dir)
        if config.model_type not in SUPPORTED_TYPES:
            raise UnsupportedModelError(
                f"model_type {config.model_type!r} is not supported; supported: {', '.join(SUPPORTED_TYPES)}"
            )
        if getattr(config, "hidden_act", "silu") != "silu":
            raise UnsupportedModelError(f"hidden_act {config.hidden_act!r} is not supported (only silu)")
        if config.model_type == "qwen2" and getattr(config, "use_sliding_window", False):
            raise UnsupportedModelError("sliding-window attention is not supported")
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        rope_type, theta, inv_freq, scaling = _rope(config, head_dim)
        llama_bias = bool(getattr(config, "attention_bias", False))
        return cls(
            model_type=config.model_type,
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            num_kv_heads=config.num_key_value_heads,
            head_dim=head_dim,
            rms_norm_eps=config.rms_norm_eps,
            max_position_embeddings=config.max_position_embeddings,
            tie_word_embeddings=bool(config.tie_word_embeddings),
            qkv_bias=llama_bias or config.model_type == "qwen2",
            o_bias=llama_bias,
            mlp_bias=bool(getattr(config, "mlp_bias", False)),
            rope_type=rope_type,
            rope_theta=theta,
            inv_freq=inv_freq,
            rope_attention_scaling=scaling,
            eos_token_ids=_eos_ids(model_dir, config),
        )


def _rope(config: PretrainedConfig, head_dim: int) -> tuple[str, float, torch.Tensor, float]:
    params = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = params.get("rope_type", "default")
    theta = float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    if rope_type not in STATIC_ROPE_TYPES:
        raise UnsupportedModelError(
            f"rope_type {rope_type!r} is not supported; supported: {STATIC_ROPE_TYPES}"
        )
    if rope_type == "default":
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        return rope_type, theta, inv_freq, 1.0
    inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"))
    return rope_type, theta, inv_freq.float(), float(scaling)


def _eos_ids(model_dir: Path, config: PretrainedConfig) -> frozenset[int]:
    """EOS ids from generation_config.json when present (it may list several), else from config.json."""
    eos = config.eos_token_id
    if (model_dir / "generation_config.json").is_file():
        eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    if eos is None:
        return frozenset()
    return frozenset([eos] if isinstance(eos, int) else eos)
