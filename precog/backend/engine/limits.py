"""Limits that depend on both the settings and the model: context length and the number of KV blocks."""

from __future__ import annotations

from precog.backend.config import EngineConfig
from precog.backend.engine.kv_cache import KVCache
from precog.backend.model.spec import ModelSpec
from precog.core import ConfigError


def resolve_limits(config: EngineConfig, spec: ModelSpec) -> tuple[int, int]:
    """(max_model_len, num_kv_blocks); ConfigError if the model or the KV budget cannot honour them."""
    model_max = spec.max_position_embeddings
    max_model_len = config.max_model_len or model_max
    if max_model_len > model_max:
        raise ConfigError(
            f"max_model_len {max_model_len} exceeds the model's max_position_embeddings {model_max}"
        )
    block_size = config.block_size
    per_block = KVCache.block_bytes(spec, block_size, config.torch_dtype(), config.kv_dtype)
    num_blocks = config.num_kv_blocks or config.kv_memory_bytes // per_block
    if num_blocks * block_size < max_model_len:
        raise ConfigError(
            f"the KV cache holds {num_blocks} blocks x {block_size} tokens = {num_blocks * block_size} "
            f"tokens, fewer than max_model_len {max_model_len}: raise kv_memory_bytes/num_kv_blocks or lower "
            f"max_model_len ({per_block} bytes per block)"
        )
    return max_model_len, num_blocks
