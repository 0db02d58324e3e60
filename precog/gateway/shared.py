"""What the request path and scale-out (`precog.gateway.replication`) both speak: hot entries, invalidations,
and what the request path asks of a tier shared between replicas, so the request path never imports the
Redis adapter that provides it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from precog.store import Entry, normalise_text


@dataclass(frozen=True, slots=True)
class HotEntry:
    """What a replica needs to serve an exact hit without its own store holding the entry."""

    id: str
    scope: str
    query: str
    answer: str
    model: str
    created: float
    expires: float | None = None
    kv_blob_id: str | None = None
    completion_tokens: int | None = None

    @classmethod
    def of(cls, entry: Entry) -> HotEntry:
        return cls(
            id=entry.id,
            scope=entry.scope,
            query=entry.query,
            answer=entry.answer,
            model=entry.model,
            created=entry.created,
            expires=entry.expires,
            kv_blob_id=entry.kv_blob_id,
            completion_tokens=entry.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class Invalidation:
    ids: tuple[str, ...] = ()
    scope: str | None = None
    substring: str | None = None
    older_than_s: float | None = None
    at: float = 0.0

    def matches(self, entry: HotEntry | Entry) -> bool:
        if self.ids and entry.id not in self.ids:
            return False
        if self.scope is not None and entry.scope != self.scope:
            return False
        if self.substring is not None and normalise_text(self.substring) not in normalise_text(entry.query):
            return False
        return self.older_than_s is None or entry.created < self.at - self.older_than_s

    def removes(self, entry: HotEntry | Entry) -> bool:
        """Matches, and existed when the invalidation was made (a later answer to the question stays)."""
        return entry.created <= self.at and self.matches(entry)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Invalidation:
        data = json.loads(raw)
        return cls(**{**data, "ids": tuple(data.get("ids") or ())})


class SharedCache(Protocol):
    """The shared tier as the request path uses it. Every call degrades (None, or nothing done) while the
    tier is down: it is an accelerator, never a dependency."""

    @property
    def up(self) -> bool: ...

    async def get_exact(self, scope: str, question: str) -> HotEntry | None: ...

    async def put_exact(self, entry: HotEntry) -> None: ...

    async def remember_next_turn(self, scope: str, kv_blob_id: str, ttl_s: int) -> None: ...

    async def next_turn_blob(self, scope: str) -> str | None: ...

    def count(self, tenant: str, model: str, outcome: str) -> None: ...

    async def enqueue_write(self, entry: Entry) -> str | None:
        """Hand a replica's write-back to the store writer; its stream id once the tier holds it."""
        ...

    async def counters(self) -> dict[str, int] | None: ...

    async def cluster(self) -> dict[str, Any] | None: ...
