"""Reading entries back from RocksDB, and adding an entry's writes and removal to a write batch.

Entries live in three column families: `entries` (the record), `exact` (scope + normalised query hash
-> id) and `hits` (counter); a blob stored with an entry lives in `blobs` (blob_table), and the store
removes it with the entry.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Set
from typing import Any

import numpy as np

from precog.store.db import Database
from precog.store.entry import Entry
from precog.store.records import (
    CorruptRecordError,
    StoredEntry,
    decode_entry,
    decode_hits,
    encode_entry,
    encode_hits,
    exact_key,
    scope_prefix,
)

log = logging.getLogger(__name__)

_CHUNK = 1_000


class EntryTable:
    """Typed access to the entry column families of one open database."""

    def __init__(self, db: Database, scope_of: Callable[[str], str | None]) -> None:
        self._db = db
        self._scope_of = scope_of

    def get(self, entry_id: str) -> Entry | None:
        """The entry with its hits, or None; CorruptRecordError if its record is damaged."""
        key = entry_id.encode()
        data = self._db.cf["entries"].get(key)
        if data is None:
            return None
        return decode_entry(data, decode_hits(self._db.cf["hits"].get(key))[0]).entry

    def exists(self, entry_id: str) -> bool:
        return self._db.cf["entries"].get(entry_id.encode()) is not None

    def add_put(self, batch: Any, entry: Entry, exact: bytes, owns_blob: bool) -> None:
        """Add the entry's record and its exact-text key (`exact`) to `batch`; its hits start at none."""
        batch.put(entry.id.encode(), encode_entry(entry, owns_blob), self._db.handle("entries"))
        batch.put(exact, entry.id.encode(), self._db.handle("exact"))

    def add_hit(self, batch: Any, entry_id: str, now: float) -> None:
        key = entry_id.encode()
        count, _ = decode_hits(self._db.cf["hits"].get(key))
        batch.put(key, encode_hits(count + 1, now), self._db.handle("hits"))

    def stored(self, ids: list[str]) -> list[StoredEntry]:
        """The stored records of `ids` that exist (a corrupt one as a placeholder that can be deleted)."""
        records = self._db.cf["entries"].get_many([i.encode() for i in ids])
        return [self._decode_or_placeholder(i, data) for i, data in zip(ids, records, strict=True) if data]

    def live_in_scope(self, found: list[tuple[str, float]], scope: str) -> list[tuple[Entry, float]]:
        """The (entry, score) of the scored ids whose entries exist, belong to `scope` and are unexpired."""
        now = time.time()
        entries = self.entries_or_none([entry_id for entry_id, _ in found])
        return [
            (entry, score)
            for (_, score), entry in zip(found, entries, strict=True)
            if entry is not None and entry.scope == scope and not entry.expired(now)
        ]

    def entries_or_none(self, ids: list[str]) -> list[Entry | None]:
        """Entries for ids, hits filled in; None for missing or corrupt ones (logged, never returned)."""
        keys = [i.encode() for i in ids]
        records = self._db.cf["entries"].get_many(keys)
        hits = self._db.cf["hits"].get_many(keys)
        out: list[Entry | None] = []
        for entry_id, data, hit in zip(ids, records, hits, strict=True):
            if data is None:
                out.append(None)
                continue
            try:
                out.append(decode_entry(data, decode_hits(hit)[0]).entry)
            except CorruptRecordError as exc:
                log.error("skipping corrupt entry record", extra={"entry_id": entry_id, "error": str(exc)})
                out.append(None)
        return out

    def with_hits(self, entries: list[Entry]) -> list[Entry]:
        """The same entries with their hit counts read in one multi-get."""
        counts = self._db.cf["hits"].get_many([e.id.encode() for e in entries])
        return [dataclasses.replace(e, hits=decode_hits(c)[0]) for e, c in zip(entries, counts, strict=True)]

    def iter_entries(self, scope: str | None) -> Iterator[Entry]:
        """Entries in key order (of one scope: through its exact-text keys); corrupt records skipped."""
        if scope is None:
            for key, data in self._db.cf["entries"].items():
                try:
                    yield decode_entry(data).entry
                except CorruptRecordError:
                    log.error(
                        "skipping corrupt entry record", extra={"entry_id": key.decode(errors="replace")}
                    )
            return
        prefix = scope_prefix(scope)
        chunk: list[str] = []
        for key, value in self._db.cf["exact"].items(from_key=prefix):
            if not key.startswith(prefix):
                break
            chunk.append(value.decode())
            if len(chunk) == _CHUNK:
                yield from (e for e in self.entries_or_none(chunk) if e is not None)
                chunk = []
        yield from (e for e in self.entries_or_none(chunk) if e is not None)

    def holder(self, key: bytes) -> str | None:
        """Id of the entry that owns an exact-text key."""
        value = self._db.cf["exact"].get(key)
        return None if value is None else value.decode()

    def add_delete(self, batch: Any, old: StoredEntry, claimed: Set[bytes] = frozenset()) -> None:
        """Add the removal of `old`'s record and keys to `batch`, sparing exact-text keys that the batch
        itself claims (its blob is the blob table's to remove)."""
        entry = old.entry
        id_key = entry.id.encode()
        batch.delete(id_key, self._db.handle("entries"))
        batch.delete(id_key, self._db.handle("hits"))
        if old.damaged:
            # The query is unknown: find the record's exact-text key by its value (rare, so a scan is fine).
            keys = [k for k, v in self._db.cf["exact"].items() if v == id_key and k not in claimed]
        else:
            key = exact_key(entry.scope, entry.query)
            keys = [key] if key not in claimed and self._db.cf["exact"].get(key) == id_key else []
        for key in keys:
            batch.delete(key, self._db.handle("exact"))

    def _decode_or_placeholder(self, entry_id: str, data: bytes) -> StoredEntry:
        """A corrupt record becomes a placeholder marked damaged, its scope recovered from the index
        so that its vector can go too."""
        try:
            return decode_entry(data)
        except CorruptRecordError:
            log.warning("found a corrupt entry record", extra={"entry_id": entry_id})
            scope = self._scope_of(entry_id) or ""
            placeholder = Entry(
                scope=scope, query="", answer="", embedding=np.zeros(0), model="", id=entry_id
            )
            return StoredEntry(entry=placeholder, owns_blob=False, damaged=True)
