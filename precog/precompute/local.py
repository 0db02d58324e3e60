"""The default engine: worker threads on this machine. Chunks are questioned by one pool; every accepted
question goes straight to a second pool that answers it, captures its KV cache and writes its entry, so
answering starts while generation is still running. The job's gate bounds concurrent upstream calls."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial

from precog.precompute import stages
from precog.precompute.chunking import Chunk
from precog.precompute.generate import generate_for_chunk
from precog.precompute.job import Job, Stopped

log = logging.getLogger(__name__)


def run_local(job: Job) -> None:
    settings = job.settings
    finishers = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="answer")
    pending: list[Future[None]] = []
    lock = threading.Lock()

    def guarded(work, *args) -> None:
        try:
            work(*args)
        except Stopped:
            pass
        except Exception as exc:
            log.exception("precompute worker failed")
            job.stop(f"unexpected error: {type(exc).__name__}: {exc}", failed=True)

    def finish(qid: str) -> None:
        stages.answer(job, qid)
        stages.capture_kv(job, qid)
        stages.write_entry(job, qid)

    def submit(qid: str) -> None:
        with lock:
            pending.append(finishers.submit(guarded, finish, qid))

    def question(chunk: Chunk) -> None:
        progress = job.progress_of(chunk.id)
        finished = generate_for_chunk(
            chunk,
            progress,
            settings,
            job.tokenizer.count,
            [partial(job.chat, writer=writer) for writer in range(len(job.writers))],
            partial(stages.judge_round, job),
            job.note_garbage,
        )
        if finished and not job.stopped:
            stages.chunk_done(job, chunk.id)

    notify = job.listeners.on_query

    def on_query(qid: str) -> None:
        notify(qid)
        submit(qid)

    job.listeners.on_query = on_query
    for qid in job.pending_queries():
        submit(qid)
    guarded(stages.ingest_query_log, job)
    with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="generate") as generators:
        for chunk in job.pending_chunks():
            generators.submit(guarded, question, chunk)
    while True:
        with lock:
            outstanding = [f for f in pending if not f.done()]
        if not outstanding:
            break
        wait(outstanding)
    finishers.shutdown()
