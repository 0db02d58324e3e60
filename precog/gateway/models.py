"""Which models clients may ask for: the configured list, or else what the upstream lists (cached briefly)."""

from __future__ import annotations

import time
from typing import Any

from precog.gateway.errors import GatewayError
from precog.gateway.settings import GatewaySettings
from precog.gateway.upstream import Upstream

_CACHE_S = 30.0
_RETRY_S = 5.0


class ModelCatalog:
    def __init__(self, settings: GatewaySettings, upstream: Upstream) -> None:
        self._settings = settings
        self._upstream = upstream
        self._listing: dict[str, Any] | None = None
        self._fetched = 0.0
        self._retry_at = 0.0

    async def listing(self) -> dict[str, Any]:
        """The OpenAI `/v1/models` list; raises the upstream's mapped error when it cannot be had."""
        if self._settings.models:
            return {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "precog"}
                    for m in self._settings.models
                ],
            }
        if self._listing is None or time.monotonic() - self._fetched > _CACHE_S:
            listing = await self._upstream.get_json("/v1/models")
            if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
                raise GatewayError(
                    502, "the upstream's model list is not an OpenAI list", code="upstream_error"
                )
            self._listing, self._fetched = listing, time.monotonic()
        return self._listing

    async def check(self, model: str) -> None:
        """404 for a model that is not served. When the upstream cannot say, the last list it gave is
        used, or else the request goes through; a failed fetch is not retried for a few seconds, so an
        unreachable upstream does not add its connect timeout to every request (hits included)."""
        if time.monotonic() < self._retry_at:
            listing = self._listing
        else:
            try:
                listing = await self.listing()
            except GatewayError:
                self._retry_at = time.monotonic() + _RETRY_S
                listing = self._listing
        if listing is None:
            return
        known = {str(m.get("id")) for m in listing["data"] if isinstance(m, dict)}
        if model not in known:
            raise GatewayError(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
