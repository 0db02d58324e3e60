"""Build our model from a Hugging Face checkpoint directory, fusing q/k/v and gate/up weights on load."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from precog.backend.model.llama import LlamaModel
from precog.backend.model.rope import RotaryEmbedding
from precog.backend.model.spec import ModelSpec, UnsupportedModelError

# Our fused parameter <- the checkpoint tensors concatenated along dim 0, in this order.
_FUSED = {
    "self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj"),
}


def _read_checkpoint(model_dir: Path) -> dict[str, torch.Tensor]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedModelError(f"{model_dir} has no *.safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensors[name] = f.get_tensor(name)
    return tensors


def _our_state_dict(
    spec: ModelSpec, ckpt: dict[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    def take(name: str) -> torch.Tensor:
        if name not in ckpt:
            raise UnsupportedModelError(f"checkpoint lacks tensor {name}")
        return ckpt[name].to(dtype)

    state = {
        "embed_tokens.weight": take("model.embed_tokens.weight"),
        "norm.weight": take("model.norm.weight"),
    }
    state["lm_head.weight"] = (
        state["embed_tokens.weight"] if spec.tie_word_embeddings else take("lm_head.weight")
    )
    for i in range(spec.num_layers):
        src = f"model.layers.{i}."
        dst = f"layers.{i}."
        for part in (
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
            "self_attn.o_proj.weight",
            "mlp.down_proj.weight",
        ):
            state[dst + part] = take(src + part)
        for fused, pieces in _FUSED.items():
            state[f"{dst}{fused}.weight"] = torch.cat([take(f"{src}{p}.weight") for p in pieces])
        if spec.qkv_bias:
            state[f"{dst}self_attn.qkv_proj.bias"] = torch.cat(
                [take(f"{src}{p}.bias") for p in _FUSED["self_attn.qkv_proj"]]
            )
        if spec.o_bias:
            state[f"{dst}self_attn.o_proj.bias"] = take(f"{src}self_attn.o_proj.bias")
        if spec.mlp_bias:
            state[f"{dst}mlp.gate_up_proj.bias"] = torch.cat(
                [take(f"{src}{p}.bias") for p in _FUSED["mlp.gate_up_proj"]]
            )
            state[f"{dst}mlp.down_proj.bias"] = take(f"{src}mlp.down_proj.bias")
    return state


def load_model(
    model_dir: Path,
    spec: ModelSpec,
    max_positions: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> LlamaModel:
    """Read the weights of `model_dir` (described by `spec`) into a fresh LlamaModel in `dtype` on
    `device` (default cpu), eval mode."""
    device = device or torch.device("cpu")
    rope = RotaryEmbedding(spec.inv_freq, spec.rope_attention_scaling, max_positions).to(device)
    with torch.device("meta"):
        model = LlamaModel(spec, rope)
    model.load_state_dict(_our_state_dict(spec, _read_checkpoint(model_dir), dtype), strict=True, assign=True)
    model.to(device)
    if spec.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval()
