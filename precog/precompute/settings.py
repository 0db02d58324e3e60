"""Settings of the offline pipeline: the scope it writes, the upstream it calls and the budgets it keeps."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from precog.core import ServiceSettings
from precog.store import KVFormat


class QuestionWriter(BaseModel):
    """Another OpenAI-compatible server whose model writes some of the questions (never their answers).

    Questions from one small model run out of new angles: after a few dozen a chunk, most of what it writes
    is a duplicate. Another model (a larger one, or another family) asks what the first does not, and more
    *different* stored questions is what raises the share of users' questions that hit.
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    model: str | None = Field(None, description="unset = the one model it serves")
    api_key: str | None = None


class PrecomputeSettings(ServiceSettings):
    """`[precompute]` in the config file, `PRECOG_PRECOMPUTE_*` in the environment.

    `model`, `system_prompt` and `tenant` name the scope of the chat app the store serves: they must be what
    that app sends to the gateway, or its first-turn requests will never hit these entries. The defaults
    match a client that sends no system message to an open gateway (tenant "default").
    """

    section: ClassVar[str] = "precompute"
    model_config = SettingsConfigDict(env_prefix="PRECOG_PRECOMPUTE_", extra="forbid")

    upstream_url: str = "http://127.0.0.1:8001"
    upstream_api_key: str | None = Field(None, description="Bearer token for an upstream that needs one")
    model: str | None = Field(None, description="the upstream model; unset = the one model it serves")
    system_prompt: str = Field("", description="the app's system prompt; '' = no system message")
    tenant: str = "default"
    question_writers: list[QuestionWriter] = Field(
        default_factory=list,
        description="more servers whose question rounds take turns with the upstream's; answers and KV "
        "caches always come from the upstream, so the entries stay in its model's scope",
    )

    tokenizer: str = Field(
        "auto",
        description="'auto' (the backend model's tokenizer when found, else 'simple'), 'simple' "
        "(words and punctuation, about 1.3 per model token) or a path to a Hugging Face tokenizer folder",
    )
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap: int = Field(32, ge=0)
    context_tokens: int = Field(2048, ge=256, description="the generator's context; bounds query masking")

    max_queries_per_chunk: int = Field(
        30,
        ge=1,
        description="distinct stored questions wanted per chunk: users' questions hit only what is stored",
    )
    questions_per_round: int = Field(6, ge=1)
    max_rounds_per_chunk: int = Field(20, ge=1)
    question_max_tokens: int = Field(96, ge=16)
    answer_max_tokens: int = Field(128, ge=16)
    quote_when_ungrounded: bool = Field(
        True,
        description="an answer its chunk does not stand behind is replaced by the chunk's sentence that "
        "holds the question's words (off: such questions are dropped)",
    )
    temperature_start: float = Field(0.7, ge=0.0, le=2.0)
    temperature_step: float = Field(0.15, gt=0.0)
    temperature_cap: float = Field(1.3, ge=0.0, le=2.0)
    duplicate_rate_trigger: float = Field(0.5, gt=0.0, le=1.0)

    retire_missing_chunks: bool = Field(
        True,
        description="the corpus is the truth: entries of chunks no longer in it (edited or removed files) "
        "leave the store; off to add a second corpus to the same scope",
    )
    dedup_threshold: float = Field(0.99, gt=0.0, le=1.0)
    ttl_seconds: float | None = Field(30 * 24 * 3600.0, gt=0)
    capture_kv: bool = True
    kv_policy: Literal["cost", "always"] = Field(
        "cost",
        description="cost: keep an exchange's KV only where loading it (measured) beats prefilling it "
        "(the backend's measured throughput); always: keep every captured KV",
    )
    kv_format: KVFormat = Field(
        "int8",
        description="how captured KV blobs are stored: float32 (lossless), float16, bfloat16, or "
        "int8/int4/int2 with group scales (bench/kv_blob_bench.py measures each one's next-turn fidelity)",
    )

    concurrency: int = Field(8, ge=1, description="calls in flight per server: its continuous batching")
    request_timeout: float = Field(300.0, gt=0)
    max_total_tokens: int | None = Field(None, ge=1, description="per invocation: prompt + completion")
    max_wall_seconds: float | None = Field(None, gt=0, description="per invocation")

    def question_servers(self) -> list[QuestionWriter]:
        """Who writes questions, in turn: the upstream first (it also answers), then the question writers."""
        upstream = QuestionWriter(url=self.upstream_url, model=self.model, api_key=self.upstream_api_key)
        return [upstream, *self.question_writers]

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> PrecomputeSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be below chunk_tokens ({self.chunk_tokens})"
            )
        if self.temperature_cap < self.temperature_start:
            raise ValueError("temperature_cap must be at least temperature_start")
        return self
