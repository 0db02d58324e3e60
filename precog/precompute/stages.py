"""The stages' steps on one job: each does its work, then writes the work log record that marks it done.

Every step is idempotent to redo, so a run killed between the work and its record repeats the work and
nothing else: a question is judged again, an answer asked again, an entry put again under the same id.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np

from precog.precompute.answer import answer_messages, choose_answer, exchange_messages
from precog.precompute.generate import Round, RoundSummary
from precog.precompute.job import Job, query_id
from precog.precompute.kv_cost import prefill_tokens_per_s, recompute_is_faster
from precog.precompute.records import (
    Answered,
    ChunkDone,
    KVCaptured,
    QueryLogDone,
    Question,
    RoundDone,
    Written,
)
from precog.precompute.upstream import Completion, UpstreamGarbage
from precog.store import CorruptBlobError, Entry, KVBlob, Source

log = logging.getLogger(__name__)

# ---- stage 2+3: generate and deduplicate --------------------------------------------------------------


def judge_round(job: Job, round_: Round, wanted: int) -> tuple[list[str], int]:
    """Dedup a round's questions against the store and this job, and record the round in one line."""
    return record_round(job, round_.chunk.id, round_.summary(round_.parsed, 0), wanted)


def record_remote_round(job: Job, chunk_id: str, round_: RoundSummary) -> None:
    """A round judged by a Ray worker within its chunk only: dedup it against everything else here."""
    wanted = job.settings.max_queries_per_chunk - len(job.replay.asked.get(chunk_id, []))
    record_round(job, chunk_id, round_, wanted)


def record_round(job: Job, chunk_id: str, round_: RoundSummary, wanted: int) -> tuple[list[str], int]:
    """Record a round with those of its candidates that are no duplicates of anything in the store or the
    job; return them and the round's duplicates."""
    candidates = list(round_.candidates)
    vectors = job.embedder.encode(candidates)
    kept, duplicates = job.dedup.accept(candidates, vectors, max(wanted, 0))
    writer = job.writer_name(round_.writer)
    accepted = tuple(
        Question(query_id(job.scope, candidates[i]), candidates[i], chunk_id, "generated", writer)
        for i in kept
    )
    job.vectors.update((q.id, vectors[i]) for q, i in zip(accepted, kept, strict=True))
    duplicates += round_.duplicates
    job.record(
        RoundDone(
            chunk=chunk_id,
            round=round_.number,
            temperature=round_.temperature,
            parsed=round_.parsed,
            duplicates=duplicates,
            repeats=round_.repeats,
            masked=round_.masked,
            accepted=accepted,
            tokens=round_.tokens,
        )
    )
    for q in accepted:
        job.listeners.on_query(q.id)
    return [q.query for q in accepted], duplicates


def chunk_done(job: Job, chunk_id: str) -> None:
    job.record(ChunkDone(chunk_id))


def ingest_query_log(job: Job) -> None:
    """Historical queries: each goes to its most similar chunk, through the same dedup, in one record."""
    if job.replay.query_log_done or not job.query_log:
        return
    chunk_ids = list(job.chunks)
    chunk_vectors = job.embedder.encode([job.chunks[c].text for c in chunk_ids])
    vectors = job.embedder.encode(job.query_log)
    kept, duplicates = job.dedup.accept(job.query_log, vectors, len(job.query_log))
    accepted = []
    for i in kept:
        nearest = chunk_ids[int(np.argmax(chunk_vectors @ vectors[i]))]
        question = Question(query_id(job.scope, job.query_log[i]), job.query_log[i], nearest, "query-log")
        job.vectors[question.id] = vectors[i]
        accepted.append(question)
    job.record(QueryLogDone(parsed=len(job.query_log), duplicates=duplicates, accepted=tuple(accepted)))
    for q in accepted:
        job.listeners.on_query(q.id)


# ---- stage 4: answer -------------------------------------------------------------------------------------


def answer(job: Job, qid: str) -> None:
    if qid in job.replay.answers:
        return
    query = job.replay.queries[qid]
    messages = answer_messages(job.settings.system_prompt, job.chunks[query.chunk].text, query.query)
    completion = job.chat(messages, 0.0, job.settings.answer_max_tokens, 0)
    if not completion.text.strip():
        job.note_garbage(UpstreamGarbage(f"empty answer to {query.query!r}"))
        return
    record_answer(job, qid, completion)


def record_answer(job: Job, qid: str, completion: Completion) -> None:
    """An answer cut off at max_tokens keeps its whole sentences (and their token count); one its chunk
    does not stand behind (`answer_grounded`) is replaced by the chunk's sentence that answers it, where
    one does (`choose_answer`). Without either it is recorded as truncated or ungrounded (its tokens were
    spent, a rerun must not ask again) and never gets a KV capture or an entry."""
    query = job.replay.queries[qid]
    chosen = choose_answer(
        completion, query.query, job.chunks[query.chunk].text, job.settings.quote_when_ungrounded
    )
    counted = completion.truncated or chosen.source == "chunk"
    job.record(
        Answered(
            id=qid,
            answer=chosen.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=job.tokenizer.count(chosen.text) if counted else completion.completion_tokens,
            trimmed=completion.truncated and chosen.source != "chunk",
            truncated=not chosen.text,
            tokens=completion.tokens,
            ungrounded=bool(chosen.text) and chosen.source is None,
            quoted=chosen.source == "chunk",
        )
    )


# ---- stage 5: KV capture ---------------------------------------------------------------------------------


def wants_kv(job: Job, qid: str) -> bool:
    return (
        job.settings.capture_kv
        and job.kv_supported
        and qid in job.replay.answers
        and job.replay.answers[qid].unusable is None
        and qid not in job.replay.kv
    )


def capture_kv(job: Job, qid: str) -> None:
    if not wants_kv(job, qid):
        return
    query = job.replay.queries[qid]
    messages = exchange_messages(job.settings.system_prompt, query.query, job.replay.answers[qid].answer)
    start = time.perf_counter()
    try:
        blob = job.export_kv(messages)
    except UpstreamGarbage as exc:
        job.note_garbage(exc)
        return
    record_kv(job, qid, blob, time.perf_counter() - start)


def record_kv(job: Job, qid: str, blob: bytes | None, seconds: float = 0.0) -> None:
    if blob is None:
        if job.kv_supported:
            log.warning("the backend has no KV export (/v1/kv/export); storing entries without KV caches")
        job.kv_supported = False
        return
    try:
        tokens = len(KVBlob.from_bytes(blob).token_ids)
    except CorruptBlobError as exc:
        job.note_garbage(UpstreamGarbage(f"KV export is not a valid KV blob: {exc}"))
        return
    job.worklog.save_kv(qid, blob)
    job.record(KVCaptured(qid, len(blob), kv_tokens=tokens, seconds=seconds))


# ---- stage 6: write --------------------------------------------------------------------------------------


def write_entry(job: Job, qid: str) -> None:
    """Put the entry (with its KV blob, atomically) unless a killed run already did, then record it."""
    if qid in job.replay.written or qid not in job.replay.answers or wants_kv(job, qid):
        return
    answered = job.replay.answers[qid]
    if answered.unusable is not None:
        job.record(Written(qid, dropped=answered.unusable))
        return
    query = job.replay.queries[qid]
    blob_path = job.worklog.kv_path(qid)
    raw = blob_path.read_bytes() if qid in job.replay.kv and blob_path.exists() else None
    skipped = None
    if job.store.get(qid) is None:
        vector = job.vectors.get(qid)
        if vector is None:
            vector = job.embedder.encode([query.query])[0]
        chunk = job.chunks[query.chunk]
        ttl = job.settings.ttl_seconds
        entry = Entry(
            scope=job.scope,
            query=query.query,
            answer=answered.answer,
            embedding=vector,
            model=job.model,
            source=Source.PRECOMPUTED,
            id=qid,
            expires=None if ttl is None else time.time() + ttl,
            meta={
                "chunk": chunk.id,
                "file": chunk.source,
                "start": str(chunk.start),
                "end": str(chunk.end),
                "origin": query.origin,
                **({"writer": query.writer} if query.writer is not None else {}),
                "tenant": job.settings.tenant,
            },
            completion_tokens=answered.completion_tokens,
        )
        job.store.put(entry, blob=None if raw is None else KVBlob.from_bytes(raw))
        if raw is not None and job.settings.kv_policy == "cost" and entry.kv_blob_id:
            rate = prefill_tokens_per_s(list(itertools.islice(reversed(job.replay.kv.values()), 256)))
            skipped = recompute_is_faster(job.store, entry.kv_blob_id, job.replay.kv[qid].kv_tokens, rate)
            if skipped:
                entry.kv_blob_id = None
                job.store.put(entry)  # replaces the entry; its blob goes with the old one
    job.record(Written(qid, kv_bytes=len(raw) if raw else 0, kv_skipped=skipped))
    blob_path.unlink(missing_ok=True)
