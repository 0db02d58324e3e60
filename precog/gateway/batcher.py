"""Embedding micro-batcher: concurrent requests' questions are encoded together in one model call.

One worker thread runs the encoder, so the model is never entered concurrently. While it encodes one
batch, the next batch fills up; under load batches grow by themselves, and a lone request waits at
most `window_ms` for company. The vectors of the most recent `cache_size` texts are kept (read-only),
so a wording that many users type is embedded once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class EmbeddingBatcher:
    def __init__(
        self,
        encode: Callable[[Sequence[str]], np.ndarray],
        max_batch: int = 32,
        window_ms: float = 1.0,
        on_batch: Callable[[int], None] | None = None,
        cache_size: int = 0,
    ) -> None:
        self._encode = encode
        self._max_batch = max_batch
        self._window_s = window_ms / 1000.0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="precog-embed")
        self._worker: asyncio.Task[None] | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def embed(self, text: str) -> np.ndarray:
        """The L2-normalised float32 embedding of one text (a read-only array)."""
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        vector = await future
        if self._cache_size:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    async def _collect(self) -> list[tuple[str, asyncio.Future[np.ndarray]]]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self._window_s
        while len(batch) < self._max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [(text, fut) for text, fut in batch if not fut.cancelled()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            try:
                vectors = await loop.run_in_executor(self._pool, self._encode, [text for text, _ in batch])
            except Exception as exc:  # the encoder's failure belongs to the waiting requests, not the worker
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            vectors = np.asarray(vectors, dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1.0, norms)
            vectors.setflags(write=False)
            for (_, fut), vector in zip(batch, vectors, strict=True):
                if not fut.done():
                    fut.set_result(vector)
