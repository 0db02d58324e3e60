"""The work log's record types: one frozen record per stage event, written as one JSON line each.

Lines carry their type (`t`) and the format version (`v`). Version 1 lines (before `v` existed) have the
same keys, some of them optional, so they decode into the same records with those fields at their defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

VERSION = 2


class WorkLogFormatError(ValueError):
    """A line that is no work log record this version of precog can read."""


@dataclass(frozen=True, slots=True)
class Question:
    """A question accepted for the store, with where it came from."""

    id: str
    query: str
    chunk: str
    origin: str  # "generated" or "query-log"
    writer: str | None = None  # the model that wrote a generated question

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.writer is None:
            del data["writer"]
        return data


@dataclass(frozen=True, slots=True)
class RoundDone:
    """One question round of a chunk, judged; `duplicates` counts its word-for-word repeats too."""

    kind: ClassVar[str] = "round"
    chunk: str
    round: int
    parsed: int
    duplicates: int
    accepted: tuple[Question, ...]
    temperature: float = 0.0
    repeats: int = 0
    masked: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class QueryLogDone:
    """The historical query log, ingested through the same dedup as generated questions."""

    kind: ClassVar[str] = "query_log"
    parsed: int
    duplicates: int
    accepted: tuple[Question, ...]
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class ChunkDone:
    kind: ClassVar[str] = "chunk_done"
    chunk: str
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class ChunkRetired:
    """A chunk no longer in the corpus (its file changed or went): its entries left the store, and the log
    forgets its questions, so a chunk that comes back is questioned afresh."""

    kind: ClassVar[str] = "chunk_retired"
    chunk: str
    entries: int = 0  # removed from the store
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer as stored: `trimmed` to whole sentences when cut off, `truncated` (and never stored) when
    not even one sentence was whole, `ungrounded` (and never stored) when its chunk does not hold what it
    says (`answer_grounded`), `quoted` when the model's answer was one of those and the answer is its
    chunk's sentence instead (`supporting_passage`)."""

    kind: ClassVar[str] = "answer"
    id: str
    answer: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    trimmed: bool = False
    truncated: bool = False
    tokens: int = 0
    ungrounded: bool = False
    quoted: bool = False

    @property
    def unusable(self) -> str | None:
        """Why this answer never becomes an entry, if it does not."""
        return "truncated" if self.truncated else "ungrounded" if self.ungrounded else None


@dataclass(frozen=True, slots=True)
class KVCaptured:
    """A KV blob saved beside the log, waiting for its entry."""

    kind: ClassVar[str] = "kv"
    id: str
    bytes: int
    tokens: int = 0
    kv_tokens: int = 0  # how many tokens the blob holds
    seconds: float = 0.0  # the export's wall time (0: not timed, e.g. on Ray)


@dataclass(frozen=True, slots=True)
class Written:
    """Done with a question: its entry is in the store, or it was `dropped` (and why)."""

    kind: ClassVar[str] = "written"
    id: str
    kv_bytes: int = 0
    dropped: str | None = None
    tokens: int = 0
    kv_skipped: str | None = None  # why the captured KV was not kept (kv_policy "cost")


Record = RoundDone | QueryLogDone | ChunkDone | ChunkRetired | Answered | KVCaptured | Written
_TYPES: dict[str, type[Record]] = {
    cls.kind: cls for cls in (RoundDone, QueryLogDone, ChunkDone, ChunkRetired, Answered, KVCaptured, Written)
}


def encode(record: Record) -> bytes:
    data: dict[str, Any] = {"t": record.kind, "v": VERSION}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name == "accepted":
            value = [q.to_json() for q in value]
        data[f.name] = value
    return (json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def decode(line: bytes | str) -> Record:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise WorkLogFormatError(f"work log line is not an object: {line!r:.80}")
    version = data.pop("v", 1)
    if not isinstance(version, int) or version > VERSION:
        raise WorkLogFormatError(f"work log line of version {version!r}; this precog reads up to {VERSION}")
    cls = _TYPES.get(data.pop("t", None))
    if cls is None:
        raise WorkLogFormatError(f"unknown work log record type in {line!r:.80}")
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {key: value for key, value in data.items() if key in known}
    if "accepted" in kwargs:
        kwargs["accepted"] = tuple(Question(**q) for q in kwargs["accepted"])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise WorkLogFormatError(f"work log {cls.kind} record is missing a field: {exc}") from exc
