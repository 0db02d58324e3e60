"""Running one admitted request on the AsyncEngine: latency metrics, and freeing its KV blocks the
moment its client goes away, for streamed and whole responses alike.

Streamed: the response closes its body generator however it ends (done, client gone, error), and the
token generator's cleanup aborts the engine request unless it finished. Whole: a watcher task waits for
the client's disconnect message and cancels the generation, which ends in the same cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from precog.backend import AsyncEngine, KVCompression, SamplingParams, TokenEvent
from precog.backend.reuse import KVReuse
from precog.backend.server import sse
from precog.backend.server.errors import APIError, server_error
from precog.backend.server.metrics import ServerMetrics
from precog.backend.server.responses import Transcript
from precog.store import KVBlob

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """An admitted request: checked by the engine, ready to run."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    kv_prefix: KVBlob | None
    arrived: float
    index: int = 0  # the choice's index in the response (prompt i, choice j of n: i * n + j)
    compression: KVCompression | None = None  # None: the engine's default
    kv_reuse: KVReuse | None = None  # prefill from a similar prompt's KV (semantic reuse)


def _reused_tokens(job: Job) -> int | None:
    stats = job.kv_reuse.stats if job.kv_reuse is not None else None
    return stats.matched if stats is not None else None


class TokenStreams:
    """The engine's token events for a job, timed into the TTFT, inter-token and latency histograms."""

    def __init__(self, engine: AsyncEngine, metrics: ServerMetrics) -> None:
        self._engine = engine
        self._metrics = metrics

    async def events(self, job: Job) -> AsyncGenerator[TokenEvent, None]:
        """The job's events; however iteration ends early, the engine request is aborted right away."""
        first: float | None = None
        last: TokenEvent | None = None
        previous = 0.0
        outcome = "aborted"
        try:
            stream = self._engine.stream(
                job.request_id,
                job.prompt_token_ids,
                job.params,
                job.kv_prefix,
                job.compression,
                kv_reuse=job.kv_reuse,
            )
            async for event in stream:
                now = time.perf_counter()
                if first is None:
                    first = now
                    self._metrics.ttft.observe(now - job.arrived)
                else:
                    self._metrics.inter_token.observe(now - previous)
                previous, last = now, event
                yield event
            outcome = "finished"
            self._metrics.e2e.observe(time.perf_counter() - job.arrived)
        except Exception:
            outcome = "failed"
            raise
        finally:
            if outcome != "finished":
                self._engine.abort(job.request_id)
            self._metrics.requests.labels(outcome).inc()
            log.info(
                "request %s",
                outcome,
                extra={
                    "request_id": job.request_id,
                    "prompt_tokens": len(job.prompt_token_ids),
                    "completion_tokens": last.completion_tokens if last else 0,
                    "cached_tokens": last.cached_tokens if last else 0,
                    "kv_imported": job.kv_prefix is not None,
                    "kv_reused_tokens": _reused_tokens(job),
                    "ttft_s": round(first - job.arrived, 4) if first else None,
                    "latency_s": round(time.perf_counter() - job.arrived, 4),
                },
            )

    async def merged(self, jobs: list[Job]) -> AsyncGenerator[tuple[Job, TokenEvent], None]:
        """The events of several jobs (one response's choices) as they come; closing it aborts them all."""
        queue: asyncio.Queue[tuple[Job, TokenEvent] | Job | BaseException] = asyncio.Queue()

        async def pump(job: Job) -> None:
            try:
                async with contextlib.aclosing(self.events(job)) as events:
                    async for event in events:
                        queue.put_nowait((job, event))
                queue.put_nowait(job)  # this one is done
            except Exception as exc:
                queue.put_nowait(exc)

        pumps = [asyncio.ensure_future(pump(job)) for job in jobs]
        try:
            running = len(jobs)
            while running:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Job):
                    running -= 1
                    continue
                yield item
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def collect(self, jobs: list[Job], request: Request) -> list[Transcript]:
        """Run the jobs to the end; if the client disconnects first, abort them and raise ClientGone."""
        transcripts = {job.index: Transcript(job.index) for job in jobs}

        async def run() -> None:
            async with contextlib.aclosing(self.merged(jobs)) as events:
                async for job, event in events:
                    transcripts[job.index].add(event)

        generation = asyncio.ensure_future(run())
        watcher = asyncio.ensure_future(_wait_for_disconnect(request))
        try:
            await asyncio.wait({generation, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (generation, watcher):
                if not task.done():
                    task.cancel()
            await asyncio.gather(generation, watcher, return_exceptions=True)
        if generation.cancelled():
            raise ClientGone(jobs[0].request_id)
        generation.result()  # re-raises what failed the generation, if anything did
        return [transcripts[job.index] for job in jobs]


class ClientGone(Exception):
    """The client disconnected before its whole response was ready; there is no one to answer."""


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class EngineStreamingResponse(StreamingResponse):
    """An SSE response that always closes its generator, so the engine request is aborted at once when
    the client disconnects, instead of whenever the garbage collector finalises the generator."""

    def __init__(self, body: AsyncGenerator[bytes, None]) -> None:
        super().__init__(body, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._body.aclose()


async def sse_with_errors(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """End an endpoint's chunks with [DONE]; a failure after the stream began becomes an error frame."""
    async with contextlib.aclosing(chunks):
        try:
            async for chunk in chunks:
                yield chunk
        except APIError as exc:
            yield sse.error_event(exc.response_body())
            return
        except Exception as exc:
            log.exception("stream failed")
            yield sse.error_event(server_error(exc).response_body())
            return
    yield sse.DONE
