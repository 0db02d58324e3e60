"""The model server's own settings (env prefix PRECOG_BACKEND_, TOML table [backend]).

The engine's settings (model, KV budget, batching) are `EngineConfig`'s, table [engine]; the server
adds only what is about serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from precog.core import ServiceSettings


class BackendSettings(ServiceSettings):
    section = "backend"
    model_config = SettingsConfigDict(env_prefix="PRECOG_BACKEND_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8001, ge=1, le=65535, description="TCP port to listen on.")
    store_path: Path | None = Field(
        Path("var/store"),
        description="Store whose KV blobs requests may name by `kv_blob_id`, opened read-only when first "
        "needed (the gateway's default store, so `precog up` resolves the ids it relays).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    kv_protect: bool = Field(
        True,
        description="When a chat request's KV is compressed, keep its system prompt and <kv-protect> spans "
        "(requests override it with kv_compression.protect).",
    )
