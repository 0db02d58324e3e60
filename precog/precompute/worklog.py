"""The pipeline's checkpoint: an append-only JSONL log plus KV blob files, in a state folder beside the store.

Each record is one `os.write` of one line on an O_APPEND descriptor, so a kill -9 leaves at most a torn last
line, which `WorkLog.open` cuts off. Every stage writes its record only after its work is durable, and the
work it describes is idempotent to redo, so replaying the log tells exactly what is left. The lines are
the typed, versioned records of `precog.precompute.records`.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from precog.precompute.records import (
    Answered,
    ChunkDone,
    ChunkRetired,
    KVCaptured,
    QueryLogDone,
    Question,
    Record,
    RoundDone,
    Written,
    decode,
    encode,
)


class Outcome(NamedTuple):
    """What one question round of a chunk gave; a round the upstream answered with garbage is not recorded,
    and `number` still says whose turn each recorded round was."""

    number: int
    parsed: int
    duplicates: int  # repeats included
    repeats: int  # word for word
    masked: int  # asked questions its prompt showed


@dataclass(slots=True)
class Replay:
    """What the log says is done, by stage."""

    outcomes: dict[str, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    asked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    chunks_done: set[str] = field(default_factory=set)
    queries: dict[str, Question] = field(default_factory=dict)
    answers: dict[str, Answered] = field(default_factory=dict)
    kv: dict[str, KVCaptured] = field(default_factory=dict)
    kv_skipped: dict[str, str] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)  # done with: stored, or dropped
    dropped: set[str] = field(default_factory=set)  # answered but not stored (see Answered.unusable)
    query_log_done: bool = False
    parsed: int = 0
    duplicates: int = 0
    tokens: int = 0

    def apply(self, record: Record) -> None:
        self.tokens += record.tokens
        match record:
            case RoundDone():
                self.outcomes[record.chunk].append(
                    Outcome(record.round, record.parsed, record.duplicates, record.repeats, record.masked)
                )
                self._accept(record.parsed, record.duplicates, record.accepted)
                for query in record.accepted:
                    self.asked[query.chunk].append(query.query)
            case QueryLogDone():
                self.query_log_done = True
                self._accept(record.parsed, record.duplicates, record.accepted)
            case ChunkDone():
                self.chunks_done.add(record.chunk)
            case ChunkRetired():
                self._forget(record.chunk)
            case Answered():
                self.answers[record.id] = record
            case KVCaptured():
                self.kv[record.id] = record
            case Written():
                self.written.add(record.id)
                if record.dropped:
                    self.dropped.add(record.id)
                if record.kv_skipped:
                    self.kv_skipped[record.id] = record.kv_skipped

    def known_chunks(self) -> set[str]:
        """Every chunk the log holds work of."""
        return self.chunks_done | set(self.outcomes) | {q.chunk for q in self.queries.values()}

    def _forget(self, chunk: str) -> None:
        self.chunks_done.discard(chunk)
        self.outcomes.pop(chunk, None)
        self.asked.pop(chunk, None)
        for qid in [qid for qid, q in self.queries.items() if q.chunk == chunk]:
            del self.queries[qid]
            self.answers.pop(qid, None)
            self.kv.pop(qid, None)
            self.written.discard(qid)
            self.dropped.discard(qid)
            self.kv_skipped.pop(qid, None)

    def _accept(self, parsed: int, duplicates: int, accepted: tuple[Question, ...]) -> None:
        self.parsed += parsed
        self.duplicates += duplicates
        self.queries.update((query.id, query) for query in accepted)


class WorkLog:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kv_folder = folder / "kv"
        self._path = folder / "log.jsonl"
        self._lock = threading.Lock()
        self._fd = -1

    @classmethod
    def open(cls, folder: Path) -> tuple[WorkLog, Replay]:
        """Open (creating) the log, cut a torn last line, and replay it."""
        log = cls(folder)
        log.kv_folder.mkdir(parents=True, exist_ok=True)
        replay = Replay()
        if log._path.exists():
            data = log._path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                with open(log._path, "r+b") as handle:
                    handle.truncate(len(complete))
            for line in complete.splitlines():
                replay.apply(decode(line))
        log._fd = os.open(log._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return log, replay

    def append(self, record: Record) -> None:
        line = encode(record)
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def kv_path(self, query_id: str) -> Path:
        return self.kv_folder / f"{query_id}.kv"

    def save_kv(self, query_id: str, blob: bytes) -> None:
        """Write then rename, so a blob file is either absent or complete."""
        final = self.kv_path(query_id)
        partial = final.with_suffix(".part")
        partial.write_bytes(blob)
        os.replace(partial, final)
