"""The one writer of the store behind many replicas (`precog gateway writer`).

RocksDB takes one writer per database, and replicas serve read-only snapshots, so one process persists
for all of them. It reads the write-back stream and the invalidation stream through Redis consumer groups,
in stream order; commits each run of write-backs in one WriteBatch; applies each invalidation; and XACKs a
message only after its change is committed. A writer killed at any moment therefore gets the unacknowledged
messages again on restart (its pending list), and storing an entry again under its id stores it once:
nothing a replica was told was accepted is lost. When something changed it publishes a snapshot (at most
every `snapshot_every_s`), which the replicas swap in; the snapshot says up to which invalidation it is
current, so replicas know which of their masks it makes unnecessary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, cast

import redis
from redis.exceptions import RedisError, ResponseError

from precog.gateway.replication.shared_tier import INVALIDATIONS
from precog.gateway.replication.write_queue import WRITEBACKS, WRITER_GROUP, decode_entry
from precog.gateway.shared import Invalidation
from precog.gateway.store_access import stream_position
from precog.store import (
    Entry,
    SnapshotInfo,
    Store,
    StoreError,
    current_snapshot,
    normalise_text,
    publish_snapshot,
)

log = logging.getLogger(__name__)

_RECENT_INVALIDATIONS = 1024
_RETRY_S = 0.5


class StoreWriter:
    def __init__(
        self,
        store: Store,
        client: redis.Redis,
        *,
        snapshot_root: Path | None,
        snapshot_every_s: float,
        snapshot_keep: int = 3,
        batch: int = 256,
        retain_s: float = 3600.0,
        consumer: str = "writer",
    ) -> None:
        self.store = store
        self._redis = client
        self._root = snapshot_root
        self._every_s = snapshot_every_s
        self._keep = snapshot_keep
        self._batch = batch
        self._retain_ms = int(retain_s * 1000)
        self._consumer = consumer
        self._cursors = {WRITEBACKS: "0", INVALIDATIONS: "0"}
        self._recent: deque[Invalidation] = deque(maxlen=_RECENT_INVALIDATIONS)
        published = current_snapshot(snapshot_root) if snapshot_root is not None else None
        self._applied = dict(published.meta) if published is not None else {}
        self._dirty = published is None
        self._published_at = 0.0
        self.written = 0

    def ensure_groups(self) -> None:
        """Create the consumer groups (from the streams' start) unless they exist."""
        for stream in (WRITEBACKS, INVALIDATIONS):
            try:
                self._redis.xgroup_create(stream, WRITER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def step(self, block_ms: int = 1000) -> int:
        """Read and persist one batch of messages (first this consumer's unacknowledged ones, left by
        a writer that died); returns how many were handled."""
        history = any(cursor == "0" for cursor in self._cursors.values())
        reply: Any = self._redis.xreadgroup(
            WRITER_GROUP,
            self._consumer,
            cast(dict[Any, Any], dict(self._cursors)),
            count=self._batch,
            block=None if history else block_ms,
        )
        messages: list[tuple[tuple[int, int], str, str, Any]] = []
        for stream_name, items in reply or ():
            stream = stream_name.decode()
            if self._cursors[stream] == "0" and not items:
                self._cursors[stream] = ">"
            for message_id, fields in items:
                ident = message_id.decode()
                messages.append((stream_position(ident), stream, ident, fields))
        messages.sort()
        run: list[tuple[str, Entry]] = []
        for _, stream, ident, fields in messages:
            if stream == WRITEBACKS:
                if fields:
                    run.append((ident, decode_entry(fields)))
                else:  # trimmed away while pending: nothing left to store
                    self._ack(WRITEBACKS, [ident])
                continue
            self._commit(run)
            run = []
            if fields:
                self._invalidate(Invalidation.from_json(fields[b"body"]))
            self._ack(INVALIDATIONS, [ident])
            self._applied["invalidations_applied"] = ident
        self._commit(run)
        return len(messages)

    def _ack(self, stream: str, ids: list[str]) -> None:
        if ids:
            self._redis.xack(stream, WRITER_GROUP, *ids)

    def _commit(self, run: list[tuple[str, Entry]]) -> None:
        """One WriteBatch for a run of write-backs, then their acknowledgement. Within the run the later
        answer to a question wins; an answer that an invalidation made after it was created removes is
        dropped (it was in flight when the invalidation ran)."""
        if not run:
            return
        latest: dict[tuple[str, str], Entry] = {}
        for _, entry in run:
            if not any(inv.removes(entry) for inv in self._recent):
                key = (entry.scope, normalise_text(entry.query))
                latest.pop(key, None)
                latest[key] = entry
        entries = list({entry.id: entry for entry in latest.values()}.values())
        if entries:
            self._put(entries)
            self.written += len(entries)
            self._dirty = True
        self._ack(WRITEBACKS, [ident for ident, _ in run])
        self._applied["writebacks_applied"] = run[-1][0]

    def _put(self, entries: list[Entry]) -> None:
        """One WriteBatch; if an entry is malformed, the others one by one (a bad message must not block
        the stream for ever)."""
        try:
            self.store.put_many(entries)
        except ValueError:
            for entry in entries:
                try:
                    self.store.put(entry)
                except ValueError as exc:
                    log.error(
                        "write-back dropped: malformed entry", extra={"id": entry.id, "error": str(exc)}
                    )

    def _invalidate(self, invalidation: Invalidation) -> None:
        """Delete what existed when the invalidation was made (an entry written since stays)."""
        age = max(0.0, time.time() - invalidation.at) + (invalidation.older_than_s or 0.0)
        removed = self.store.invalidate(
            ids=list(invalidation.ids) or None,
            scope=invalidation.scope,
            substring=invalidation.substring,
            older_than=age,
        )
        self._recent.append(invalidation)
        self._dirty = True
        log.info("invalidation applied", extra={"removed": removed})

    def publish(self) -> SnapshotInfo | None:
        """Publish a snapshot now if anything changed since the last one (and trim acknowledged history)."""
        if self._root is None or not self._dirty:
            return None
        info = publish_snapshot(self.store, self._root, self._applied, keep=self._keep)
        self._dirty = False
        self._published_at = time.monotonic()
        self._trim()
        log.info("snapshot published", extra={"snapshot": info.name, "entries": len(self.store)})
        return info

    def _trim(self) -> None:
        """Forget acknowledged write-backs older than the retention (kept that long for audits)."""
        horizon = (int(time.time() * 1000) - self._retain_ms, 0)
        pending: Any = self._redis.xpending(WRITEBACKS, WRITER_GROUP)
        groups: Any = self._redis.xinfo_groups(WRITEBACKS)
        delivered = next(
            (g["last-delivered-id"].decode() for g in groups if g["name"].decode() == WRITER_GROUP), "0-0"
        )
        floor = stream_position(pending["min"].decode()) if pending["pending"] else stream_position(delivered)
        ms, seq = min(horizon, (floor[0], floor[1] + (0 if pending["pending"] else 1)))
        self._redis.xtrim(WRITEBACKS, minid=f"{ms}-{seq}")

    def run(self, stop: threading.Event) -> None:
        """Persist until `stop` is set, riding out Redis and store failures; publish a last snapshot."""
        while not stop.is_set():
            try:
                self.ensure_groups()
                self._loop(stop)
            except (RedisError, OSError, StoreError) as exc:
                log.warning("store writer paused", extra={"error": repr(exc)})
                self._cursors = {WRITEBACKS: "0", INVALIDATIONS: "0"}
                stop.wait(_RETRY_S)
        try:
            self.publish()
        except (RedisError, OSError, StoreError) as exc:
            log.warning("last snapshot not published", extra={"error": repr(exc)})

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(block_ms=500)
            if self._dirty and time.monotonic() - self._published_at >= self._every_s:
                self.publish()
