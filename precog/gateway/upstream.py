"""The relay to any OpenAI-compatible upstream: pooled, timed out, retried only where safe, circuit-broken.

A request is retried only after a connect error, i.e. when not one byte reached the upstream, so a
retry can never make the upstream generate twice. Upstream failures become OpenAI-style errors:
unreachable 502, overloaded or circuit open 503, timed out 504; the upstream's own 4xx pass through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from precog.gateway.breaker import CircuitBreaker
from precog.gateway.errors import GatewayError
from precog.gateway.metrics import GatewayMetrics
from precog.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def _error_message(body: bytes) -> tuple[str, str | None, str | None]:
    """Message, code and param of an OpenAI-style error body (or the body's start when it is not one)."""
    try:
        error = json.loads(body)["error"]
        return str(error.get("message") or error), error.get("code"), error.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:300].decode(errors="replace") or "no body", None, None


class Upstream:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self.breaker = CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_reset_s)
        headers = (
            {"authorization": f"Bearer {settings.upstream_api_key}"} if settings.upstream_api_key else {}
        )
        self._client = httpx.AsyncClient(
            base_url=settings.upstream_url,
            headers=headers,
            timeout=httpx.Timeout(
                settings.upstream_read_timeout_s, connect=settings.upstream_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_max_connections,
                keepalive_expiry=settings.upstream_keepalive_s,
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _fail(self, kind: str, status: int, message: str) -> GatewayError:
        self._metrics.upstream_errors.labels(kind).inc()
        self.breaker.record_failure()
        log.warning("upstream failure", extra={"kind": kind, "status": status, "detail": message})
        return GatewayError(status, message, code=f"upstream_{kind}")

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """Send a request and return the open response (2xx only); the caller reads and closes it."""
        if not self.breaker.allow():
            retry = max(1, round(self.breaker.retry_after_s()))
            self._metrics.upstream_errors.labels("circuit_open").inc()
            raise GatewayError(
                503,
                "the upstream is failing; the circuit breaker is open",
                code="upstream_circuit_open",
                headers={"retry-after": str(retry)},
            )
        request = self._client.build_request("POST", path, json=body)
        try:
            return await self._send(request)
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise

    async def _send(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self._settings.upstream_retries + 1):
            try:
                response = await self._client.send(request, stream=True)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self._settings.upstream_retries:
                    raise self._fail("unreachable", 502, f"the upstream is unreachable: {exc!r}") from exc
                await asyncio.sleep(self._settings.upstream_retry_backoff_s * 2**attempt)
            except httpx.PoolTimeout as exc:
                raise self._fail(
                    "pool_exhausted", 503, "too many requests in flight to the upstream"
                ) from exc
            except httpx.TimeoutException as exc:
                raise self._fail("timeout", 504, "the upstream did not answer in time") from exc
            except httpx.HTTPError as exc:
                raise self._fail("protocol", 502, f"the upstream connection failed: {exc!r}") from exc
        if response.status_code < 400:
            self.breaker.record_success()
            return response
        try:
            body_bytes = await response.aread()
        except httpx.HTTPError:
            body_bytes = b""
        finally:
            await response.aclose()
        message, code, param = _error_message(body_bytes)
        if response.status_code >= 500:
            status = 503 if response.status_code == 503 else 502
            raise self._fail(
                f"http_{response.status_code}", status, f"upstream error {response.status_code}: {message}"
            )
        self.breaker.record_success()
        raise GatewayError(response.status_code, message, code=code or "upstream_rejected", param=param)

    async def get_json(self, path: str) -> Any:
        """A small GET (model list, health); failures map to the same errors as `post`.

        A GET is idempotent, so any transport error is retried, a dropped keep-alive connection included.
        """
        for attempt in range(self._settings.upstream_retries + 1):
            try:
                response = await self._client.get(path, timeout=self._settings.upstream_connect_timeout_s + 3)
                break
            except httpx.TimeoutException as exc:
                raise GatewayError(
                    504, "the upstream did not answer in time", code="upstream_timeout"
                ) from exc
            except httpx.TransportError as exc:
                if attempt == self._settings.upstream_retries:
                    raise GatewayError(
                        502, f"the upstream is unreachable: {exc!r}", code="upstream_unreachable"
                    ) from exc
                await asyncio.sleep(self._settings.upstream_retry_backoff_s * 2**attempt)
        if response.status_code >= 400:
            message, _, _ = _error_message(response.content)
            raise GatewayError(
                502, f"upstream error {response.status_code}: {message}", code="upstream_error"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise GatewayError(502, "the upstream answered with invalid JSON", code="upstream_error") from exc
