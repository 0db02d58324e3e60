"""One precompute job: its inputs checked, its store and work log opened, and the guarded operations that
both engines run (every upstream call goes through the budget, the concurrency gate and the stop flag).

A job is identified by its scope: its state lives in `<store>.precompute/<scope>/` beside the store, so the
same command run again continues it, and a job for another app (another scope) keeps its own log.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from precog.precompute.budget import Budget
from precog.precompute.chunking import Chunk, chunk_documents
from precog.precompute.dedup import Deduplicator
from precog.precompute.generate import ChunkProgress
from precog.precompute.ingest import CorpusError, read_corpus, read_query_log
from precog.precompute.records import ChunkRetired, Record
from precog.precompute.settings import PrecomputeSettings, QuestionWriter
from precog.precompute.tokens import Tokenizer, load_tokenizer
from precog.precompute.upstream import Completion, Upstream, UpstreamGarbage, UpstreamUnavailable
from precog.precompute.worklog import Replay, WorkLog
from precog.store import (
    EmbeddingMismatchError,
    Source,
    StoreError,
    normalise_text,
    scope_key,
)

if TYPE_CHECKING:
    from precog.store import Embedder, Store

log = logging.getLogger(__name__)
GARBAGE_LIMIT = 5  # consecutive unusable upstream answers before the job stops


class PrecomputeError(RuntimeError):
    """The job cannot start or cannot go on; the message says why and what to do."""


class Stopped(Exception):
    """Raised inside a worker when the job has stopped (budget, deadline, upstream down)."""


def query_id(scope: str, query: str) -> str:
    """The entry id: the same question in the same scope is the same entry, on every run."""
    return hashlib.blake2b(f"{scope}\n{normalise_text(query)}".encode(), digest_size=16).hexdigest()


def _stored_similarity(store: Store, scope: str) -> Callable[[str, np.ndarray], float]:
    def similarity(text: str, vector: np.ndarray) -> float:
        if store.find_exact(scope, text) is not None:
            return 1.0
        hits = store.search(scope, vector, 1)
        return float(hits[0][1]) if hits else 0.0

    return similarity


def _served_model(upstream: Upstream, wanted: str | None) -> str:
    served = upstream.served_models()
    if wanted is None:
        if len(served) != 1:
            raise PrecomputeError(f"{upstream.url} serves {served or 'no models'}; set the model to use")
        return served[0]
    if served and wanted not in served:
        raise PrecomputeError(
            f"{upstream.url} does not serve model {wanted!r} (it serves {', '.join(served)})"
        )
    return wanted


def _role(writer: int, url: str) -> str:
    return "the backend" if writer == 0 else f"question writer {url}"


def _connect(server: QuestionWriter, timeout: float, role: str) -> Upstream:
    """A client for `server` with its model resolved; fails fast, before anything is written."""
    upstream = Upstream(server.url, server.model, timeout, api_key=server.api_key)
    try:
        upstream.model = _served_model(upstream, server.model)
    except (UpstreamUnavailable, UpstreamGarbage) as exc:
        upstream.close()
        raise PrecomputeError(f"{role} is not available: {exc}") from exc
    except PrecomputeError:
        upstream.close()
        raise
    return upstream


def state_folder(store_path: Path, scope: str) -> Path:
    return store_path.parent / f"{store_path.name}.precompute" / scope


@dataclass(slots=True)
class Listeners:
    """Engine callbacks, so the local engine can queue answers and move progress bars as records land."""

    on_query: Callable[[str], None] = lambda _id: None
    on_record: Callable[[Record], None] = lambda _record: None


@dataclass(slots=True)
class Job:
    settings: PrecomputeSettings
    model: str
    scope: str
    store: Store
    embedder: Embedder
    writers: list[Upstream]  # who writes questions, in turn; the first is the upstream, which also answers
    worklog: WorkLog
    replay: Replay
    tokenizer: Tokenizer
    chunks: dict[str, Chunk]
    query_log: list[str]
    skipped_files: list[str]
    store_path: Path
    budget: Budget
    dedup: Deduplicator
    listeners: Listeners = field(default_factory=Listeners)
    stop_reason: str | None = None
    failed: bool = False
    kv_supported: bool = True
    garbage: int = 0
    retired: int = 0  # entries of chunks gone from the corpus, removed this run
    started: float = field(default_factory=time.monotonic)
    _gates: list[threading.Semaphore] = field(default_factory=list)  # one per writer's server
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _consecutive_garbage: int = 0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def open(
        cls, settings: PrecomputeSettings, corpus: Path, store_path: Path, query_log: Path | None = None
    ) -> Job:
        """Check every input before anything is created: corpus, upstream, the store's embedding model."""
        from precog.store import Embedder, Store

        try:
            documents = read_corpus(corpus)
            queries = read_query_log(query_log) if query_log else []
        except CorpusError as exc:
            raise PrecomputeError(str(exc)) from exc
        servers = settings.question_servers()
        writers: list[Upstream] = []
        try:
            for index, server in enumerate(servers):
                writers.append(_connect(server, settings.request_timeout, _role(index, server.url)))
            resolved = [
                server.model_copy(update={"model": client.model})
                for server, client in zip(servers, writers, strict=True)
            ]
            model = str(resolved[0].model)
            settings = settings.model_copy(update={"model": model, "question_writers": resolved[1:]})
            scope = scope_key(model, settings.system_prompt, settings.tenant)
            folder = state_folder(store_path, scope)
            try:
                tokenizer = load_tokenizer(settings.tokenizer, folder.parent)
            except (OSError, ValueError) as exc:
                raise PrecomputeError(f"cannot load tokenizer {settings.tokenizer!r}: {exc}") from exc
            embedder = Embedder()
            try:
                store = Store.open(
                    store_path,
                    embedding_model=embedder.name,
                    dim=embedder.dim,
                    progress=False,
                    kv_format=settings.kv_format,
                )
            except EmbeddingMismatchError as exc:
                raise PrecomputeError(
                    f"store {store_path} was built with another embedding model: {exc}. "
                    "Use a new --store path, or the embedding model the store was built with."
                ) from exc
            except StoreError as exc:
                raise PrecomputeError(f"cannot open store {store_path}: {exc}") from exc
        except BaseException:
            for client in writers:
                client.close()
            raise
        worklog, replay = WorkLog.open(folder)
        chunks = chunk_documents(
            documents.documents, tokenizer, settings.chunk_tokens, settings.chunk_overlap
        )
        job = cls(
            settings=settings,
            model=model,
            scope=scope,
            store=store,
            embedder=embedder,
            writers=writers,
            worklog=worklog,
            replay=replay,
            tokenizer=tokenizer,
            chunks={c.id: c for c in chunks},
            query_log=queries,
            skipped_files=documents.skipped,
            store_path=store_path,
            budget=Budget(settings.max_total_tokens, settings.max_wall_seconds),
            dedup=Deduplicator(settings.dedup_threshold, embedder.dim, _stored_similarity(store, scope)),
            _gates=[threading.Semaphore(settings.concurrency) for _ in writers],
        )
        job._retire_stale_chunks()
        job._seed_dedup()
        job._sweep_kv_files()
        for problem in documents.skipped:
            log.warning("skipped unreadable file", extra={"problem": problem})
        return job

    @property
    def upstream(self) -> Upstream:
        return self.writers[0]

    def writer_name(self, writer: int) -> str:
        return str(self.writers[writer].model)

    def close(self) -> None:
        self.worklog.close()
        for client in self.writers:
            client.close()
        self.store.close()

    def _retire_stale_chunks(self) -> None:
        """Chunks of this scope gone from the corpus (a file edited or removed: its chunk ids, hashes of
        their text, change): their entries and KV blobs leave the store, and the log forgets them, before
        anything is questioned; unchanged chunks keep their entries. Redone whole after a kill."""
        if not self.settings.retire_missing_chunks:
            return
        stored = [
            e
            for e in self.store.entries(self.scope, limit=sys.maxsize)
            if e.source == Source.PRECOMPUTED and e.meta.get("chunk") not in self.chunks
        ]
        by_chunk: dict[str, list[str]] = {
            chunk: [] for chunk in self.replay.known_chunks() - set(self.chunks)
        }
        for entry in stored:
            by_chunk.setdefault(entry.meta.get("chunk", ""), []).append(entry.id)
        for chunk, ids in sorted(by_chunk.items()):
            removed = self.store.invalidate(ids=ids) if ids else 0
            for qid in [qid for qid, q in self.replay.queries.items() if q.chunk == chunk]:
                self.worklog.kv_path(qid).unlink(missing_ok=True)
            self.record(ChunkRetired(chunk, removed))
            self.retired += removed
            log.info("chunk retired", extra={"chunk": chunk, "entries": removed})

    def _sweep_kv_files(self) -> None:
        """Blob files a killed run left behind: partial writes, and blobs already inside the store."""
        for path in self.worklog.kv_folder.iterdir():
            if path.suffix == ".part" or path.stem in self.replay.written:
                path.unlink(missing_ok=True)

    def _seed_dedup(self) -> None:
        known = list(self.replay.queries.values())
        texts = [q.query for q in known]
        vectors = self.embedder.encode(texts)
        self.vectors.update((q.id, v) for q, v in zip(known, vectors, strict=True))
        self.dedup.seed(texts, vectors)

    # ---- what is left -------------------------------------------------------------------------------------

    def pending_chunks(self) -> list[Chunk]:
        return [c for cid, c in self.chunks.items() if cid not in self.replay.chunks_done]

    def progress_of(self, chunk_id: str) -> ChunkProgress:
        return ChunkProgress(
            list(self.replay.asked.get(chunk_id, [])), list(self.replay.outcomes.get(chunk_id, []))
        )

    def pending_queries(self) -> list[str]:
        """Accepted questions not yet in the store whose chunk is still in the corpus."""
        return [
            qid
            for qid, q in self.replay.queries.items()
            if qid not in self.replay.written and q.chunk in self.chunks
        ]

    # ---- stopping -----------------------------------------------------------------------------------------

    def stop(self, reason: str, failed: bool) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason, self.failed = reason, failed
                log.warning("precompute stopping", extra={"reason": reason})

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def note_garbage(self, exc: UpstreamGarbage) -> None:
        with self._lock:
            self.garbage += 1
            self._consecutive_garbage += 1
            streak = self._consecutive_garbage
        log.warning("unusable upstream answer", extra={"error": str(exc)})
        if streak >= GARBAGE_LIMIT:
            self.stop(f"the backend returned {streak} unusable answers in a row (last: {exc})", failed=True)

    # ---- the guarded upstream call ------------------------------------------------------------------------

    def chat(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int, writer: int = 0
    ) -> Completion:
        """One chat completion from the upstream (or question writer `writer`) within the budget and that
        server's concurrency limit; Stopped when it may not run."""
        if self.stopped:
            raise Stopped
        prompt = sum(self.tokenizer.count(m["content"]) + 4 for m in messages)
        reserved = prompt + max_tokens
        refused = self.budget.reserve(reserved)
        if refused:
            self.stop(refused, failed=False)
            raise Stopped
        used = 0
        try:
            with self._gates[writer]:
                completion = self.writers[writer].chat(messages, temperature, max_tokens, seed)
            if completion.tokens == 0:
                completion = Completion(completion.text, prompt, self.tokenizer.count(completion.text))
            used = completion.tokens
            with self._lock:
                self._consecutive_garbage = 0
            return completion
        except UpstreamUnavailable as exc:
            self.stop(f"{_role(writer, self.writers[writer].url)} is down: {exc}", failed=True)
            raise Stopped from exc
        finally:
            self.budget.settle(reserved, used)

    def export_kv(self, messages: list[dict[str, str]]) -> bytes | None:
        """The exchange's KV blob bytes (None: the upstream has no KV export); Stopped when it may not run."""
        if self.stopped:
            raise Stopped
        try:
            with self._gates[0]:
                return self.upstream.export_kv(messages)
        except UpstreamUnavailable as exc:
            self.stop(f"the backend is down: {exc}", failed=True)
            raise Stopped from exc

    def record(self, record: Record) -> None:
        """Append to the work log and apply to the replayed state (the one way state changes)."""
        with self._lock:
            self.worklog.append(record)
            self.replay.apply(record)
        self.listeners.on_record(record)

    def charge_remote(self, tokens: int) -> bool:
        """Count tokens a Ray worker spent; True (and the job stopped) once a budget is reached."""
        self.budget.settle(0, tokens)
        refused = self.budget.reserve(0)
        if refused:
            self.stop(refused, failed=False)
            return True
        self.budget.settle(0, 0)
        return False
