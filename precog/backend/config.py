"""The engine's settings: model, KV-cache budget and batching limits (env prefix PRECOG_ENGINE_)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from precog.backend.compress import CompressionMethod, KVCompression
from precog.backend.sparse import SparseSettings, budget_pages_for
from precog.core import ConfigError, ServiceSettings

if TYPE_CHECKING:
    import torch

MiB = 1 << 20


class EngineConfig(ServiceSettings):
    """Engine settings; every value can come from the [engine] TOML table or PRECOG_ENGINE_<NAME>.

    Invalid values raise a pydantic ValidationError (a ValueError) that names the field; limits that
    depend on the model (max_model_len, the KV budget) are checked when the Engine loads it.
    """

    section = "engine"
    model_config = SettingsConfigDict(env_prefix="PRECOG_ENGINE_", extra="forbid", validate_default=True)

    # A local Hugging Face Llama-family checkpoint; None: the prepared SmolLM2-135M-Instruct.
    model_dir: Path | None = None
    # The name served to clients and stamped on KV blobs; None: the model folder's name.
    model_name: str | None = None
    # Tokens per KV-cache block.
    block_size: int = Field(default=16, ge=1, le=1024)
    # KV-cache budget in bytes, used when num_kv_blocks is unset.
    kv_memory_bytes: int = Field(default=512 * MiB, gt=0)
    # Exact number of KV blocks (overrides kv_memory_bytes).
    num_kv_blocks: int | None = Field(default=None, gt=0)
    # Most sequences in one step, and most tokens (prefill + decode) in one step.
    max_num_seqs: int = Field(default=32, ge=1)
    max_num_batched_tokens: int = Field(default=512, ge=1)
    # Longest prompt + completion; None: the model's max_position_embeddings.
    max_model_len: int | None = Field(default=None, ge=2)
    enable_prefix_caching: bool = True
    # Where weights, KV pages and every step's tensors live: "cpu", "cuda" (the current CUDA device) or
    # "auto" (cuda when torch sees one). On cuda the engine serves dense attention without KV compression
    # or semantic reuse (those run on the cpu device only); the host syncs once per step (sampled ids).
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # Weights, activations and KV pages (attention softmax and logits stay float32); bfloat16 halves the
    # memory of both.
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # KV pages: "auto" (in dtype), or packed "int8" / "int4" codes with float16 scales per 32 channels of
    # each token and head, dequantised in attention's gather (a quarter / an eighth of float32's bytes plus
    # the scales). Packed pages serve dense attention with the torch backend and presses, not sparse
    # attention, OjaKV or ThinKV (which keep pages of their own).
    kv_dtype: Literal["auto", "int8", "int4"] = "auto"
    # Decode attention: "torch" (reference) or "kernels" (precog.kernels.paged_attention: Triton on GPU).
    attention_backend: Literal["torch", "kernels"] = "torch"
    # torch intra-op threads; None: torch's default. On a CPU shared with other busy processes, 1 is
    # much faster than oversubscribing (spinning OpenMP threads).
    num_threads: int | None = Field(default=None, ge=1)
    # Seed of the generator that seeds requests which bring no seed of their own.
    seed: int = Field(default=0, ge=0)
    # How often to log prefill/decode tokens/s while working.
    log_interval_s: float = Field(default=10.0, gt=0)
    # Default KV compression for requests that bring no `kv_compression` of their own: a press
    # of precog.backend.compress ("none": keep every token) and the share of the prompt's cached tokens it
    # evicts.
    # Compressed requests neither use nor fill the prefix cache.
    kv_compression_method: CompressionMethod = "none"
    kv_compression_ratio: float = Field(default=0.5, ge=0.0, lt=1.0)
    # Decode attention over the KV: "dense" (every cached token) or "sparse" (SparseServe: per KV head the
    # sparse_budget_tokens worth of pages with the highest Quest bound, sink and recent pages included,
    # served from a fast tier of sparse_fast_tier_pages (layer, block) pages over the full KV cache).
    attention: Literal["dense", "sparse"] = "dense"
    sparse_budget_tokens: int = Field(default=512, ge=2)
    sparse_sink_pages: int = Field(default=1, ge=0)
    sparse_fast_tier_pages: int = Field(default=8192, ge=1)
    # Keep the running requests' estimated working sets within the fast tier (defer or preempt).
    sparse_working_set_batching: bool = True

    def torch_dtype(self) -> torch.dtype:
        import torch  # here, so that reading settings does not load torch

        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]

    def torch_device(self) -> torch.device:
        """The device this engine computes on; ConfigError if cuda is asked for and torch sees none."""
        import torch

        if self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise ConfigError("engine device 'cuda' asked for, but torch sees no CUDA device")
        if cpu_only := self._cpu_only_settings():  # "auto" became cuda: the rule of device = "cuda"
            raise ConfigError(self._cpu_only_refusal(cpu_only[0]))
        return torch.device("cuda", torch.cuda.current_device())

    def _cpu_only_settings(self) -> list[str]:
        """The settings in force that run on the cpu device only."""
        cpu_only = {
            "attention": self.attention == "sparse",
            "kv_compression_method": self.kv_compression_method != "none",
        }
        return [name for name, used in cpu_only.items() if used]

    def _cpu_only_refusal(self, name: str) -> str:
        return f"device cuda cannot serve {name} {getattr(self, name)} (cpu only)"

    def kv_compression(self) -> KVCompression | None:
        """The default as a request option; None when it is off."""
        if self.kv_compression_method == "none":
            return None
        return KVCompression(self.kv_compression_method, self.kv_compression_ratio)

    def sparse_settings(self) -> SparseSettings:
        return SparseSettings(
            budget_pages=budget_pages_for(self.sparse_budget_tokens, self.block_size),
            sink_pages=self.sparse_sink_pages,
            fast_tier_pages=self.sparse_fast_tier_pages,
            working_set_batching=self.sparse_working_set_batching,
        )

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.device == "cuda" and (cpu_only := self._cpu_only_settings()):
            raise ValueError(self._cpu_only_refusal(cpu_only[0]))
        if self.kv_dtype != "auto":
            clash = {
                "attention": self.attention == "sparse",
                "attention_backend": self.attention_backend == "kernels",
                "kv_compression_method": self.kv_compression_method in ("ojakv", "thinkv"),
            }
            for name, bad in clash.items():
                if bad:
                    raise ValueError(f"kv_dtype {self.kv_dtype} cannot serve {name} {getattr(self, name)}")
        if self.kv_compression_method == "ojakv" and self.dtype != "float32":
            raise ValueError(f"kv_compression_method ojakv needs dtype float32, not {self.dtype}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be at least max_num_seqs "
                f"({self.max_num_seqs}): every running sequence needs one token per decode step"
            )
        if self.attention == "sparse" and -(-self.sparse_budget_tokens // self.block_size) < max(
            2, self.sparse_sink_pages + 1
        ):
            raise ValueError(
                f"sparse_budget_tokens ({self.sparse_budget_tokens}) must cover the {self.sparse_sink_pages} "
                f"sink pages and the most recent page of {self.block_size} tokens"
            )
        if self.attention == "sparse" and self.kv_compression_method == "ojakv":
            raise ValueError("kv_compression_method 'ojakv' needs attention 'dense' (its low-rank pages)")
        if self.model_dir is not None and not self.model_dir.is_dir():
            raise ValueError(f"model_dir {self.model_dir} is not a directory")
        return self
