"""The same stages as a Ray Data pipeline, for corpora too large for one machine.

Workers (Ray actors) do the upstream calls: one stage questions chunks, one answers questions and captures
their KV caches, `concurrency` actors each. The driver owns everything that must be single: the global
dedup against the store and the whole job, the work log, the budgets and the store writes, so a Ray job
checkpoints and resumes exactly like a local one, and the store is never opened by two processes.

Two differences from the local engine, both from where state lives: a worker's adaptive temperature sees
duplicates within its chunk only (the driver then drops cross-chunk and stored duplicates), and budgets are
checked as results reach the driver, so in-flight work may pass them by at most `concurrency` tasks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from precog.precompute import stages
from precog.precompute.answer import answer_messages, choose_answer, exchange_messages
from precog.precompute.chunking import Chunk
from precog.precompute.dedup import Deduplicator
from precog.precompute.generate import ChunkProgress, Round, RoundSummary, generate_for_chunk
from precog.precompute.job import Job
from precog.precompute.settings import PrecomputeSettings
from precog.precompute.tokens import load_tokenizer
from precog.precompute.upstream import Completion, Upstream, UpstreamGarbage, UpstreamUnavailable
from precog.precompute.worklog import Outcome
from precog.store import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a question worker sends back for one chunk."""

    rounds: tuple[RoundSummary, ...]
    finished: bool
    garbage: tuple[str, ...]
    error: str | None  # a writer's server was down

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChunkResult:
        data = json.loads(text)
        rounds = tuple(RoundSummary.from_json(r) for r in data["rounds"])
        return cls(rounds, data["finished"], tuple(data["garbage"]), data["error"])


@dataclass(frozen=True, slots=True)
class AnswerTask:
    """One question for an answer worker: its `answer` when a killed run already has it, and whether to
    capture the exchange's KV cache."""

    query: str
    chunk: str
    answer: str | None
    kv: bool


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """What an answer worker sends back for one question; `completion` only when it asked for the answer."""

    answer: str | None
    completion: Completion | None = None
    kv: str = "none"  # "ok" (the blob travels beside), "unsupported", or "none"
    garbage: str | None = None
    error: str | None = None  # the backend was down

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AnswerResult:
        data = json.loads(text)
        completion = None if data["completion"] is None else Completion(**data["completion"])
        return cls(**{**data, "completion": completion})


class _Worker:
    """What every actor holds: the settings and a client for each server that writes questions (the
    upstream, which also answers, first)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        os.environ.pop("PRECOG_CONFIG", None)
        self.settings = PrecomputeSettings(**settings)
        timeout = self.settings.request_timeout
        self.writers = [
            Upstream(s.url, s.model, timeout, api_key=s.api_key) for s in self.settings.question_servers()
        ]
        self.upstream = self.writers[0]


class QuestionWorker(_Worker):
    """Questions one chunk per row: {"chunk", "asked", "outcomes"} -> {"chunk", "result" (JSON)}."""

    def __init__(self, settings: dict[str, Any], tokenizer_dir: str) -> None:
        super().__init__(settings)
        self.tokenizer = load_tokenizer(self.settings.tokenizer, Path(tokenizer_dir))
        self.embedder = Embedder()

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        chunk = Chunk(**json.loads(row["chunk"]))
        progress = ChunkProgress(json.loads(row["asked"]), [Outcome(*o) for o in json.loads(row["outcomes"])])
        dedup = Deduplicator(self.settings.dedup_threshold, self.embedder.dim)
        dedup.seed(progress.asked, self.embedder.encode(progress.asked))
        rounds: list[RoundSummary] = []
        garbage: list[str] = []
        error = None

        def judge(round_: Round, wanted: int) -> tuple[list[str], int]:
            kept, duplicates = dedup.accept(round_.parsed, self.embedder.encode(round_.parsed), wanted)
            accepted = [round_.parsed[i] for i in kept]
            rounds.append(round_.summary(accepted, duplicates))
            return accepted, duplicates + round_.repeats

        try:
            finished = generate_for_chunk(
                chunk,
                progress,
                self.settings,
                self.tokenizer.count,
                [writer.chat for writer in self.writers],
                judge,
                lambda e: garbage.append(str(e)),
            )
        except UpstreamUnavailable as exc:
            finished, error = False, str(exc)
        result = ChunkResult(tuple(rounds), finished, tuple(garbage), error)
        return {"chunk": chunk.id, "result": result.to_json()}


class AnswerWorker(_Worker):
    """Answers a batch of questions and captures each exchange's KV cache; never raises, reports instead."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"id": [], "result": [], "kv": []}
        for qid, payload in zip(batch["id"], batch["payload"], strict=True):
            task = AnswerTask(**json.loads(payload))
            result = AnswerResult(task.answer)
            blob = None
            try:
                stored = task.answer
                if stored is None:
                    messages = answer_messages(self.settings.system_prompt, task.chunk, task.query)
                    completion = self.upstream.chat(messages, 0.0, self.settings.answer_max_tokens, 0)
                    chosen = choose_answer(
                        completion, task.query, task.chunk, self.settings.quote_when_ungrounded
                    )
                    stored = chosen.text if chosen.source is not None else None
                    result = AnswerResult(chosen.text, completion)
                if stored and task.kv:
                    exchange = exchange_messages(self.settings.system_prompt, task.query, stored)
                    blob = self.upstream.export_kv(exchange)
                    result = dataclasses.replace(result, kv="ok" if blob is not None else "unsupported")
            except UpstreamGarbage as exc:
                result = dataclasses.replace(result, garbage=str(exc))
            except UpstreamUnavailable as exc:
                result = dataclasses.replace(result, error=str(exc))
            out["id"].append(str(qid))
            out["result"].append(result.to_json())
            out["kv"].append(blob or b"")
        return out


def _init_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)


def _question_stage(job: Job, settings: dict[str, Any]) -> None:
    import ray

    chunks = job.pending_chunks()
    if not chunks or job.stopped:
        return
    rows = []
    for chunk in chunks:
        progress = job.progress_of(chunk.id)
        rows.append(
            {
                "chunk": json.dumps(chunk.to_dict()),
                "asked": json.dumps(progress.asked),
                "outcomes": json.dumps(progress.outcomes),
            }
        )
    dataset = ray.data.from_items(rows).map(
        QuestionWorker,  # type: ignore[arg-type]  # a callable class: Ray runs it in `concurrency` actors
        fn_constructor_kwargs={"settings": settings, "tokenizer_dir": str(job.worklog.folder.parent)},
        concurrency=job.settings.concurrency,
    )
    for row in dataset.iter_rows():
        result = ChunkResult.from_json(row["result"])
        for problem in result.garbage:
            job.note_garbage(UpstreamGarbage(problem))
        for round_ in result.rounds:
            stages.record_remote_round(job, row["chunk"], round_)
        if result.error:
            job.stop(f"a server writing questions is down: {result.error}", failed=True)
        elif result.finished:
            stages.chunk_done(job, row["chunk"])
        if job.charge_remote(sum(r.tokens for r in result.rounds)) or job.stopped:
            break


def _answer_stage(job: Job, settings: dict[str, Any]) -> None:
    import ray

    pending = job.pending_queries()
    if not pending or job.stopped:
        return
    rows = []
    for qid in pending:
        query, answered = job.replay.queries[qid], job.replay.answers.get(qid)
        task = AnswerTask(
            query=query.query,
            chunk=job.chunks[query.chunk].text,
            answer=None if answered is None else answered.answer,
            kv=job.settings.capture_kv and qid not in job.replay.kv and not (answered and answered.unusable),
        )
        rows.append({"id": qid, "payload": json.dumps(dataclasses.asdict(task))})
    dataset = ray.data.from_items(rows).map_batches(
        AnswerWorker,
        fn_constructor_kwargs={"settings": settings},
        batch_size=4,
        concurrency=job.settings.concurrency,
    )
    for row in dataset.iter_rows():
        qid, result = row["id"], AnswerResult.from_json(row["result"])
        if result.error:
            job.stop(f"the backend is down: {result.error}", failed=True)
            break
        tokens = 0
        completion = result.completion
        if completion is not None and qid not in job.replay.answers:
            tokens = completion.tokens
            if completion.text.strip():
                stages.record_answer(job, qid, completion)
        exhausted = job.charge_remote(tokens)
        if result.garbage or qid not in job.replay.answers:  # nothing usable came back
            job.note_garbage(UpstreamGarbage(result.garbage or "empty answer"))
        else:
            if result.kv == "ok":
                stages.record_kv(job, qid, bytes(row["kv"]))
            elif result.kv == "unsupported":
                stages.record_kv(job, qid, None)
            stages.write_entry(job, qid)
        if exhausted or job.stopped:
            break


def run_ray(job: Job) -> None:
    """Question every pending chunk, then answer, capture and write every pending question."""
    _init_ray()
    settings = job.settings.model_dump()
    stages.ingest_query_log(job)
    _question_stage(job, settings)
    _answer_stage(job, settings)
