"""The per-request cache header: `x-precog-cache-control: bypass | refresh | only-if-cached`."""

from __future__ import annotations

from typing import Literal

from precog.gateway.errors import GatewayError

CacheControl = Literal["bypass", "refresh", "only-if-cached"]


def parse_cache_control(value: str | None) -> CacheControl | None:
    """The header's directive, None when absent; 400 for anything else."""
    if value is None or not value.strip():
        return None
    value = value.strip().lower()
    if value not in ("bypass", "refresh", "only-if-cached"):
        raise GatewayError(
            400,
            f"x-precog-cache-control must be bypass, refresh or only-if-cached, not {value!r}",
            code="invalid_cache_control",
            param="x-precog-cache-control",
        )
    return value  # type: ignore[return-value]


def header_safe(text: str) -> str:
    """A reason or timing line that fits in an HTTP header (ASCII, bounded)."""
    return text.encode("ascii", "replace").decode()[:300]
