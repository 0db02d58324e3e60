"""The gateway's typed settings: defaults < `[gateway]` in the TOML config < PRECOG_GATEWAY_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from precog.core import ServiceSettings
from precog.gateway.scoping import ScopeTemplate


class GatewaySettings(ServiceSettings):
    """Everything an operator may tune; thresholds can also be patched at run time through /admin/config."""

    section: ClassVar[str] = "gateway"
    model_config = SettingsConfigDict(env_prefix="PRECOG_GATEWAY_", extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"

    upstream_url: str = "http://127.0.0.1:8001"
    upstream_api_key: str | None = Field(
        default=None, description="Bearer token sent to the upstream, if it needs one."
    )
    upstream_kv_import: bool = Field(
        default=True,
        description="Name a stored KV cache (kv_blob_id) in relayed follow-up turns so the upstream skips "
        "their prefill; only precog's backend understands it, so turn it off in front of vLLM, SGLang or "
        "any other OpenAI-compatible server.",
    )
    models: list[str] = Field(
        default_factory=list, description="Models clients may ask for; empty = whatever the upstream lists."
    )

    store_path: Path = Path("var/store")
    store_role: Literal["local", "replica"] = Field(
        default="local",
        description="local: this gateway opens store_path for writing (one gateway per store). replica: it "
        "serves the snapshot published under snapshot_root read-only and hands write-backs to the one "
        "store writer (`precog gateway writer`) through Redis, so any number of replicas can run.",
    )
    snapshot_root: Path | None = Field(
        default=None, description="Where the writer publishes snapshots and replicas follow `current`."
    )
    snapshot_poll_s: float = Field(default=0.5, gt=0, description="How often a replica looks for a new one.")
    snapshot_wait_s: float = Field(
        default=60.0, ge=0, description="How long a replica waits at start for the first snapshot."
    )
    snapshot_every_s: float = Field(
        default=30.0, gt=0, description="Writer: publish a snapshot this often when anything changed."
    )
    snapshot_keep: int = Field(default=3, ge=1, description="Writer: snapshots kept under snapshot_root.")
    writer_batch: int = Field(
        default=256, ge=1, le=10_000, description="Writer: write-backs committed per RocksDB WriteBatch."
    )
    similarity_threshold: float = Field(
        default=0.85,
        ge=0.0,
        le=1.0,
        description="Cosine a candidate needs before the guard judges it. A trade-off, measured: on the "
        "fow-cache held-out pairs 0.5 gives recall 62% and 0.85 gives 49%, both with no false hits; on "
        "precompute_bench's held-out questions 0.5 also served other questions on the same topic "
        "('Is autism heritable?' answered as 'What is autism?'), so the default stays conservative.",
    )
    tenant_thresholds: dict[str, float] = Field(default_factory=dict)
    scope_templates: list[ScopeTemplate] = Field(
        default_factory=list,
        description="Variable parts of system prompts that do not change the answer (a date, a name), "
        "replaced by a placeholder before the scope is computed; see precog/gateway/scoping.py.",
    )
    search_k: int = Field(
        default=4, ge=1, le=64, description="Candidates the semantic tier hands to the guard."
    )
    answer_tier: bool = Field(
        default=True,
        description="When no stored question matches, serve an entry whose stored answer answers the "
        "question (found by dense and BM25 search over questions and answers, checked lexically).",
    )
    answer_candidates: int = Field(
        default=8, ge=1, le=64, description="Answer tier: candidates from each of the two searches."
    )
    answer_min_similarity: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Answer tier: cosine a dense candidate needs."
    )
    answer_covered_below: float = Field(
        default=0.92,
        ge=0.0,
        le=1.0,
        description="With the answer tier on: below this cosine a stored question the guard accepts must "
        "also hold, with its answer, every content word of the new question.",
    )
    calibration: bool = Field(
        default=True,
        description="Keep each tenant's false-hit rate under max_false_hit_rate by checking would-be "
        "hits against fresh answers (precog/gateway/calibration.py); off: the guard's fixed point decides.",
    )
    max_false_hit_rate: float = Field(
        default=0.01, gt=0.0, lt=1.0, description="The error bound δ the calibrator keeps, per tenant."
    )
    calibration_verify_every: int = Field(
        default=20, ge=1, description="Relay and compare every n-th would-be hit that could be served."
    )
    calibration_check_new_entries: bool = Field(
        default=False,
        description="Relay and compare each entry's first would-be hit before serving it: a bound that rests "
        "on evidence per entry instead of the guard's prior, for one relayed ask per entry.",
    )
    calibration_explore_from: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Guard scores from here up, under its accept point, are relayed and compared so that "
        "their band can earn the right to serve.",
    )
    calibration_agree_similarity: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="Cosine between a stored and a fresh answer from which they count as the same answer.",
    )

    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API key -> tenant. Empty = open gateway, every caller is 'default'.",
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token for /admin; None = admin open only if no keys."
    )
    redis_url: str | None = Field(
        default=None, description="Shared tier across replicas; None = everything in-process."
    )
    redis_timeout_s: float = Field(default=0.05, gt=0)

    writeback_enabled: bool = True
    store_sync: bool = Field(
        default=True,
        description="local role: fsync the store's log before a write-back counts as stored, so an "
        "acknowledged write-back survives a crash of the machine, not only of the process (write-backs "
        "are group-committed: one sync per group)",
    )
    writeback_max_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    writeback_ttl_s: float | None = Field(default=7 * 24 * 3600.0, gt=0)

    kv_reuse: bool = Field(
        default=False,
        description="On a miss, point the upstream at the nearest stored entry's KV blob "
        "(`kv_reuse_blob_id`: precog's backend prefills from it approximately, SemShareKV). The nearest "
        "entry is known only once the lookup ends, so with this on a miss is relayed after the lookup "
        "instead of on the parallel path.",
    )
    kv_reuse_min_similarity: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Question cosine the nearest entry needs for KV reuse."
    )

    parallel_path: bool = Field(
        default=True, description="Start the upstream request while the lookup runs (StorInfer)."
    )
    parallel_delay_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    upstream_bills_per_token: bool = Field(
        default=False,
        description="The upstream charges for tokens (a hosted API): no parallel path, a request is sent "
        "only once the lookup has missed, so hits spend no upstream tokens; a miss waits for the lookup "
        "(bench/billed_upstream_bench.py measures what that costs).",
    )

    max_request_bytes: int = Field(default=1 << 20, ge=1024)
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests per API key per minute; 0 = unlimited."
    )
    rate_limit_burst: int = Field(default=60, ge=1)

    upstream_connect_timeout_s: float = Field(default=2.0, gt=0)
    upstream_read_timeout_s: float = Field(default=120.0, gt=0)
    upstream_max_connections: int = Field(default=256, ge=1)
    upstream_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of requests that never reached the upstream."
    )
    upstream_retry_backoff_s: float = Field(default=0.05, ge=0)
    upstream_keepalive_s: float = Field(
        default=2.0,
        gt=0,
        description="Idle pooled connections are dropped after this; keep it under the upstream's own "
        "keep-alive timeout (uvicorn's is 5 s) so that no request goes out on a connection being closed.",
    )
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=10.0, gt=0)

    embed_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch threads for embedding: one is fastest for short questions on a busy machine.",
    )
    embed_cache_size: int = Field(
        default=10_000, ge=0, description="Vectors of recent question texts kept in memory (0: none)."
    )
    embed_batch_max: int = Field(default=32, ge=1)
    embed_batch_window_ms: float = Field(default=1.0, ge=0.0)
    cost_per_1k_tokens: float = Field(
        default=0.002, ge=0.0, description="Estimated upstream price, for 'cost saved'."
    )

    @field_validator("upstream_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("tenant_thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {tenant: t for tenant, t in value.items() if not 0.0 <= t <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1]: {bad}")
        return value

    @model_validator(mode="after")
    def _replica_needs_its_parts(self) -> GatewaySettings:
        if self.store_role == "replica" and (self.redis_url is None or self.snapshot_root is None):
            raise ValueError("store_role 'replica' needs redis_url and snapshot_root")
        return self

    def threshold_for(self, tenant: str) -> float:
        return self.tenant_thresholds.get(tenant, self.similarity_threshold)

    @property
    def open_tenancy(self) -> bool:
        """No API keys configured: anyone may call, as the tenant 'default'."""
        return not self.api_keys
