"""One completion request, end to end: look up, and serve from storage or relay to the upstream.

StorInfer's parallel path: the upstream request starts when the request arrives (or after
`parallel_delay_ms`, see precog.gateway.pending) while the lookup runs. A hit cancels it; a miss finds it
already under way, so a miss pays almost nothing for having looked. An upstream that bills per token
(`upstream_bills_per_token`) gets the request only once the lookup has missed, so hits spend nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from typing import Any, get_args

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from precog.gateway.cache_control import CacheControl, header_safe
from precog.gateway.conversation import NextTurnIndex
from precog.gateway.errors import GatewayError
from precog.gateway.lookup import Check, Hit, Lookup, LookupResult
from precog.gateway.metrics import GatewayMetrics
from precog.gateway.openai_format import AnswerCollector
from precog.gateway.pending import KVParam, PendingRequest, UpstreamRequest, start_request
from precog.gateway.query import CacheQuery
from precog.gateway.settings import GatewaySettings
from precog.gateway.shared import SharedCache
from precog.gateway.stats import Stats
from precog.gateway.store_access import StoreAccess
from precog.gateway.upstream import Upstream
from precog.gateway.writeback import WriteBack

log = logging.getLogger(__name__)

_PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
_KV_PARAMS = frozenset(get_args(KVParam))


class CompletionProxy:
    def __init__(
        self,
        settings: GatewaySettings,
        store: StoreAccess,
        lookup: Lookup,
        upstream: Upstream,
        writeback: WriteBack,
        next_turns: NextTurnIndex,
        stats: Stats,
        metrics: GatewayMetrics,
        shared: SharedCache | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._lookup = lookup
        self._upstream = upstream
        self._writeback = writeback
        self._next_turns = next_turns
        self._stats = stats
        self._metrics = metrics
        self._shared = shared
        self._background: set[asyncio.Task[Any]] = set()
        # An upstream that bills per token sees a request only once the lookup has missed: no hit pays.
        self._parallel = (
            settings.parallel_path and not settings.kv_reuse and not settings.upstream_bills_per_token
        )

    async def handle(
        self,
        query: CacheQuery,
        body: dict[str, Any],
        stream: bool,
        include_usage: bool,
        control: CacheControl | None,
    ) -> Response:
        started = time.perf_counter()
        request = UpstreamRequest.of(_PATHS[query.kind], body)
        if query.kind == "chat" and query.earlier_turns and self._settings.upstream_kv_import:
            blob = await self._next_turns.blob_for(query.scope)
            if blob is not None:
                request = request.with_kv("kv_blob_id", blob)
        if control == "bypass" or query.uncacheable:
            reason = (
                "client asked to bypass" if control == "bypass" else f"not cacheable: {query.uncacheable}"
            )
            bypass = self._start(request, 0.0)
            return await self._relay(query, bypass, stream, "bypass", reason, started, writeback=False)
        if control == "refresh":
            refresh = self._start(request, 0.0)
            return await self._relay(
                query, refresh, stream, "miss", "client asked to refresh", started, replace=True
            )

        if control == "only-if-cached":
            query = dataclasses.replace(query, relayable=False)
        early = None
        if self._parallel and query.relayable:
            early = self._start(request, self._settings.parallel_delay_ms / 1000.0)
        try:
            result = await self._lookup.run(query)
        except asyncio.CancelledError:
            if early is not None:
                await early.discard()
            raise
        except Exception:  # a broken lookup degrades to a miss, it never fails the request
            log.exception("lookup failed, relaying", extra={"scope": query.scope})
            result = LookupResult(reason="lookup failed")
        if result.hit is not None:
            if early is not None:
                await early.discard()
            return await self._serve_hit(query, result, result.hit, stream, include_usage, started)
        if not query.relayable:
            self._count(query, "miss", started, result.reason)
            raise GatewayError(
                504,
                f"no stored answer and only-if-cached was asked ({result.reason})",
                code="cache_miss",
                headers={"x-precog-cache": "miss", "x-precog-cache-reason": header_safe(result.reason)},
            )
        if early is None and result.near_kv_blob_id and request.kv_param is None:
            request = request.with_kv("kv_reuse_blob_id", result.near_kv_blob_id)
        relay = early or self._start(request, 0.0)
        return await self._relay(query, relay, stream, "miss", result.reason, started, result=result)

    def _start(self, request: UpstreamRequest, delay_s: float) -> PendingRequest:
        return start_request(self._upstream, request, delay_s)

    def _count(
        self, query: CacheQuery, outcome: str, started: float, reason: str, tokens_saved: int = 0
    ) -> None:
        """Metrics, statistics and one structured log line per request (why it hit or missed)."""
        elapsed = time.perf_counter() - started
        self._metrics.requests.labels(query.kind, outcome).inc()
        self._metrics.request_seconds.labels(outcome).observe(elapsed)
        self._stats.record(query.tenant, query.model, outcome, elapsed * 1000, tokens_saved)
        if self._shared is not None:
            self._shared.count(query.tenant, query.model, outcome)
        log.info(
            "request",
            extra={
                "outcome": outcome,
                "ms": round(elapsed * 1000, 2),
                "tenant": query.tenant,
                "model": query.model,
                "kind": query.kind,
                "reason": reason,
            },
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_hit(self, hit: Hit) -> None:
        try:
            await self._store.record_hit(hit.entry_id)
        except Exception as exc:  # an entry known only to the shared tier, or a store write failure
            log.debug("hit not recorded", extra={"entry": hit.entry_id, "error": repr(exc)})

    async def _serve_hit(
        self,
        query: CacheQuery,
        result: LookupResult,
        hit: Hit,
        stream: bool,
        include_usage: bool,
        started: float,
    ) -> Response:
        answer = hit.served_to(query)
        if self._settings.store_role == "local":  # a replica's snapshot is read-only
            self._spawn(self._record_hit(hit))
        if hit.kv_blob_id and query.kind == "chat":
            self._spawn(self._next_turns.remember(query.next_turn_scope(hit.answer), hit.kv_blob_id))
        tokens_saved = answer.prompt_tokens + answer.completion_tokens
        self._count(query, "hit", started, f"{hit.entry_id}: {result.reason}", tokens_saved)
        headers = {
            "x-precog-cache": "hit",
            "x-precog-entry-id": hit.entry_id,
            "x-precog-similarity": f"{hit.similarity:.4f}",
            "x-precog-tier": hit.tier,
            "x-precog-cache-reason": header_safe(result.reason),
            "server-timing": ", ".join(f"{name};dur={ms}" for name, ms in result.timings_ms.items()),
        }
        if stream:
            return StreamingResponse(
                answer.sse(include_usage), media_type="text/event-stream", headers=headers
            )
        return JSONResponse(answer.completion(), headers=headers)

    async def _response(self, relay: PendingRequest) -> httpx.Response:
        """The upstream's response. Stored KV only saves time, so a request whose KV reference the
        upstream refuses (no such blob, no store configured, store unavailable) is sent once more
        without it; an error response means nothing was generated, so this cannot generate twice."""
        try:
            return await relay.response()
        except GatewayError as exc:
            if relay.request.kv_param is None or not (exc.param in _KV_PARAMS or exc.status == 503):
                raise
            self._metrics.upstream_errors.labels("kv_blob_refused").inc()
            log.warning("upstream refused the stored KV, relaying without it", extra={"error": exc.message})
            return await self._start(relay.request.without_kv(), 0.0).response()

    async def _relay(
        self,
        query: CacheQuery,
        relay: PendingRequest,
        stream: bool,
        outcome: str,
        reason: str,
        started: float,
        writeback: bool = True,
        replace: bool = False,
        result: LookupResult | None = None,
    ) -> Response:
        headers = {"x-precog-cache": outcome, "x-precog-cache-reason": header_safe(reason)}
        if result is not None and result.timings_ms:
            headers["server-timing"] = ", ".join(f"{name};dur={ms}" for name, ms in result.timings_ms.items())
        try:
            response = await self._response(relay)
        except GatewayError as exc:
            self._count(query, "error", started, exc.message)
            exc.headers = {**exc.headers, **headers}
            raise
        self._count(query, outcome, started, reason)
        check = result.check if result is not None and response.status_code == 200 else None
        if stream:
            return StreamingResponse(
                self._pipe(query, response, writeback, replace, check),
                status_code=response.status_code,
                media_type="text/event-stream",
                headers={**headers, "cache-control": "no-cache"},
            )
        try:
            content = await response.aread()
        except httpx.HTTPError as exc:
            self._metrics.upstream_errors.labels("read").inc()
            raise GatewayError(
                502, f"the upstream connection broke: {exc!r}", code="upstream_disconnected"
            ) from exc
        finally:
            await response.aclose()
        collector = AnswerCollector(query.kind)
        with contextlib.suppress(ValueError):
            collector.take_body(json.loads(content))
        self._after_answer(query, collector, writeback, replace, check)
        return Response(
            content, status_code=response.status_code, media_type="application/json", headers=headers
        )

    def _after_answer(
        self,
        query: CacheQuery,
        collector: AnswerCollector,
        writeback: bool,
        replace: bool,
        check: Check | None,
    ) -> None:
        """A relayed answer arrived: count the tokens the upstream says it spent, offer the answer for
        write-back, and settle the check it answers."""
        self._stats.spend(collector.prompt_tokens or 0, collector.completion_tokens or 0)
        if writeback:
            self._writeback.offer(query, collector, replace=replace)
        if check is not None and collector.text:
            self._spawn(self._settle(check, collector.text))

    async def _settle(self, check: Check, fresh_answer: str) -> None:
        try:
            await self._lookup.settle(check, fresh_answer)
        except Exception:  # a lost check only slows learning; it never touches the response
            log.exception("calibration check failed", extra={"entry": check.judgement.candidate.entry_id})

    async def _pipe(
        self,
        query: CacheQuery,
        response: httpx.Response,
        writeback: bool,
        replace: bool,
        check: Check | None = None,
    ) -> Any:
        """Relay SSE bytes as they come (the client's pace is the upstream's pace), collecting the answer."""
        collector = AnswerCollector(query.kind)
        finished = False
        try:
            async for chunk in response.aiter_raw():
                collector.feed_sse(chunk)
                yield chunk
            finished = True
        except httpx.HTTPError as exc:
            self._metrics.upstream_errors.labels("stream_broken").inc()
            log.warning("upstream stream broke", extra={"error": repr(exc)})
            error = GatewayError(502, "the upstream stream broke off", code="upstream_disconnected")
            yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
        finally:
            await response.aclose()
        self._after_answer(query, collector, writeback and finished, replace, check if finished else None)
