"""The asyncio front of the engine: a background thread runs the step loop, coroutines stream tokens.

Token events cross from the stepping thread to the event loop with `call_soon_threadsafe`. A stream
that is closed early (the client went away) aborts its request, which frees its KV blocks before the
engine's next step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable

from precog.backend.compress import KVCompression
from precog.backend.engine.llm_engine import Engine
from precog.backend.engine.sequence import Request
from precog.backend.outputs import TokenEvent
from precog.backend.reuse import KVReuse
from precog.backend.sampling_params import SamplingParams
from precog.store import KVBlob

log = logging.getLogger(__name__)


class EngineShutdownError(RuntimeError):
    """The engine stopped before the request finished."""


class AsyncEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the step loop on a daemon thread (idempotent)."""
        if self.running:
            return
        self._stop.clear()
        self.engine.driven_externally = True
        self._thread = threading.Thread(target=self._loop, name="precog-engine", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop; requests still in flight end with EngineShutdownError."""
        if self._thread is None:
            return
        self._stop.set()
        self.engine.wake()
        self._thread.join()
        self._thread = None
        self.engine.fail_all(EngineShutdownError("the engine shut down"))
        self.engine.driven_externally = False

    def _loop(self) -> None:
        engine = self.engine
        while not self._stop.is_set():
            if not engine.has_work():
                engine.wait_for_work(timeout=0.5)
                continue
            try:
                engine.step()
            except Exception as exc:
                log.exception("engine step failed; failing the requests in flight")
                engine.fail_all(exc)

    async def stream(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        kv_prefix: KVBlob | None = None,
        compression: KVCompression | None = None,
        prompt_rest: AsyncIterable[list[int]] | None = None,
        kv_reuse: KVReuse | None = None,
    ) -> AsyncIterator[TokenEvent]:
        """Yield the request's token events until one carries a finish_reason.

        `compression` evicts part of the prompt's KV after its prefill (None: the engine's default);
        `kv_reuse` prefills from a similar prompt's KV (precog.backend.reuse).
        `prompt_rest` yields the parts of the prompt that are not ready yet (retrieved documents, the
        rest of an upload): `prompt_token_ids` is prefilled while they are produced, and the first
        token is sampled once the iterable ends (RServe's overlap). An error it raises fails the request.

        Raises ValueError (before the first event) if the request cannot be served, and
        EngineShutdownError or the step's exception if the engine fails it. Closing the iterator
        early aborts the request.
        """
        if not self.running:
            raise EngineShutdownError("the engine is not running; call start() first")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[TokenEvent | BaseException] = asyncio.Queue()

        def deliver(item: TokenEvent | BaseException) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(events.put_nowait, item)

        self.engine.submit(
            Request(
                request_id,
                list(prompt_token_ids),
                params,
                kv_prefix,
                on_event=deliver,
                on_error=deliver,
                compression=compression,
                prompt_complete=prompt_rest is None,
                kv_reuse=kv_reuse,
            )
        )
        feeder = None
        if prompt_rest is not None:
            feeder = asyncio.create_task(self._feed_prompt(request_id, prompt_rest, deliver))
        finished = False
        try:
            while not finished:
                item = await events.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finish_reason is not None
                yield item
        finally:
            if feeder is not None:
                feeder.cancel()
            if not finished:
                self.abort(request_id)

    async def _feed_prompt(
        self,
        request_id: str,
        parts: AsyncIterable[list[int]],
        on_error: Callable[[TokenEvent | BaseException], None],
    ) -> None:
        try:
            async for part in parts:
                self.engine.extend_prompt(request_id, part)
        except Exception as exc:
            self.abort(request_id)
            on_error(exc)
            return
        self.engine.extend_prompt(request_id, [], final=True)

    def abort(self, request_id: str) -> None:
        """Stop the request; its blocks are freed before the engine's next step."""
        self.engine.abort(request_id)

    async def export_kv(self, prompt_token_ids: list[int]) -> KVBlob:
        """Prefill the prompt (batched with whatever else runs) and return its KV blob."""
        return await asyncio.to_thread(self.engine.export_kv, prompt_token_ids)
