"""The Store facade: entries in RocksDB, their vectors in per-scope FAISS indexes, KV blobs beside them.

Every entry is written in one RocksDB WriteBatch together with its exact-text key, its KV blob and the
bumped vector epoch, so a crash leaves either all of it or none. The FAISS index is derived data; it is
updated after the batch commits, saved on close, and rebuilt from the records when it does not match.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from precog.store import archive
from precog.store.change_log import catch_up, forget_until, record_change, touched_since
from precog.store.db import INDEX_DIR, Database, stored_identity
from precog.store.embedding import MODEL_DIM, MODEL_NAME
from precog.store.entry import Entry
from precog.store.entry_table import BLOB_OF_ENTRY, BLOB_STANDALONE, EntryTable
from precog.store.errors import ReadOnlyStoreError, StoreError, StoreReadError, StoreWriteError
from precog.store.index_build import build_index
from precog.store.index_files import IndexUnusableError, load_index, save_index
from precog.store.records import (
    StoredEntry,
    decode_entry,
    decode_hits,
    encode_entry,
    encode_hits,
    encode_u64,
    exact_key,
)
from precog.store.scope import normalise_text
from precog.store.scope_index import IndexParams, ScopeIndex
from precog.store.stats import collect_stats, index_info
from precog.store.validation import validated_embedding
from precog.store.vector_index import VectorIndex
from precog.store.vectors import normalised
from precog.store.verify import VerifyReport, verify_store

if TYPE_CHECKING:
    from precog.store.kvblob import KVBlob

log = logging.getLogger(__name__)

_DELETE_CHUNK = 1_000


class Store:
    """One store directory, opened for writing by one process or read-only by any number of others."""

    def __init__(
        self,
        path: Path,
        db: Database,
        embedding_model: str,
        dim: int,
        epoch: int,
        params: IndexParams,
        progress: bool,
    ) -> None:
        self.path = path
        self.embedding_model = embedding_model
        self.dim = dim
        self.read_only = db.read_only
        self._db = db
        self._epoch = epoch
        self._params = params
        self._progress = progress
        self._write_lock = threading.RLock()
        self._closed = False
        self._loaded_index: VectorIndex | None = None
        self._table = EntryTable(db, lambda entry_id: self._index.scope_of(entry_id))
        if not self.read_only:
            self._loaded_index = self._open_index()

    @property
    def _index(self) -> VectorIndex:
        """The vector index; a read-only store loads (or rebuilds) it on first use, so that commands
        that only read records (list, show, export) never pay for it."""
        if self._loaded_index is None:
            with self._write_lock:
                if self._loaded_index is None:
                    self._loaded_index = self._open_index()
        return self._loaded_index

    @_index.setter
    def _index(self, index: VectorIndex) -> None:
        self._loaded_index = index

    # ---- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        embedding_model: str = MODEL_NAME,
        dim: int = MODEL_DIM,
        read_only: bool = False,
        create: bool = True,
        sync: bool = False,
        index_params: IndexParams | None = None,
        progress: bool = True,
    ) -> Store:
        """Open (or create) the store at `path`.

        read_only: many processes may read while one writes; the reader sees the records as of opening.
        sync: fsync every write (survives power loss, not just a killed process) at a large cost per put.
        """
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        path = Path(path)
        params = index_params or IndexParams()
        faiss.omp_set_num_threads(params.faiss_threads)
        db = Database.open(
            path, read_only=read_only, create=create, sync=sync, embedding_model=embedding_model, dim=dim
        )
        try:
            meta = db.read_meta(embedding_model, dim)
            return cls(path, db, embedding_model, dim, meta.epoch, params, progress)
        except BaseException:
            db.close()
            raise

    @staticmethod
    def identity(path: str | Path) -> tuple[str, int]:
        """The embedding model and dimension the store at `path` was built with."""
        return stored_identity(Path(path))

    def close(self) -> None:
        """Save the vector index (writers) and release the database; calling it twice is harmless."""
        with self._write_lock:
            if self._closed:
                return
            try:
                if not self.read_only:
                    self._save_index()
            finally:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __len__(self) -> int:
        """Entries with a vector in the index (expired ones included until compact())."""
        return len(self._index)

    # ---- entries -------------------------------------------------------------------------------

    def put(self, entry: Entry, blob: KVBlob | None = None) -> str:
        """Store `entry` (and `blob`, atomically with it); returns its id.

        An earlier entry with the same id, or with the same scope and normalised query, is replaced.
        On return `entry.embedding` is the stored unit vector and `entry.kv_blob_id` names the blob.
        """
        return self.put_many([entry], None if blob is None else [blob])[0]

    def put_many(self, entries: list[Entry], blobs: list[KVBlob | None] | None = None) -> list[str]:
        """Store many entries in one atomic batch (much faster than put() one at a time)."""
        self._check_writable()
        if blobs is not None and len(blobs) != len(entries):
            raise ValueError("put_many needs one blob (or None) per entry")
        pairs = list(zip(entries, blobs or [None] * len(entries), strict=True))
        vectors = [validated_embedding(entry, self.dim) for entry, _ in pairs]
        keys = [exact_key(entry.scope, entry.query) for entry in entries]
        new_ids = {entry.id for entry in entries}
        if len(new_ids) < len(entries) or len(set(keys)) < len(entries):
            raise ValueError("put_many got two entries with the same id, or the same scope and query")
        claimed = set(keys)
        blob_bytes = [None if blob is None else BLOB_OF_ENTRY + blob.to_bytes() for _, blob in pairs]
        with self._write_lock:
            self._check_open()
            batch = self._db.batch()
            replaced: dict[str, StoredEntry] = {}
            written: list[Entry] = []
            for entry, vector, key, blob in zip(entries, vectors, keys, blob_bytes, strict=True):
                stored = dataclasses.replace(entry, embedding=vector, hits=0)
                holder = self._table.holder(key)
                old_ids = {stored.id} | ({holder} - new_ids if holder is not None else set())
                for old in self._table.stored(sorted(old_ids - set(replaced))):
                    self._table.add_delete(batch, old, claimed)
                    replaced[old.entry.id] = old
                if blob is not None:
                    stored.kv_blob_id = uuid.uuid4().hex
                    batch.put(stored.kv_blob_id.encode(), blob, self._db.handle("blobs"))
                batch.put(
                    stored.id.encode(), encode_entry(stored, blob is not None), self._db.handle("entries")
                )
                batch.put(key, stored.id.encode(), self._db.handle("exact"))
                written.append(stored)
            touched = [(old.entry.scope, old.entry.id) for old in replaced.values()]
            self._commit(batch, touched + [(e.scope, e.id) for e in written])
            for old in replaced.values():
                self._index.remove(old.entry.scope, [old.entry.id])
            by_scope: dict[str, list[Entry]] = defaultdict(list)
            for stored in written:
                by_scope[stored.scope].append(stored)
            for scope, group in by_scope.items():
                self._index.add(scope, [e.id for e in group], np.stack([e.embedding for e in group]))
        for entry, stored in zip(entries, written, strict=True):
            entry.embedding = stored.embedding
            entry.kv_blob_id = stored.kv_blob_id
        return [entry.id for entry in entries]

    def get(self, entry_id: str) -> Entry | None:
        """The entry (expired or not), or None; CorruptRecordError if its record is damaged."""
        self._check_open()
        data = self._db.cf["entries"].get(entry_id.encode())
        if data is None:
            return None
        hits, _ = decode_hits(self._db.cf["hits"].get(entry_id.encode()))
        return decode_entry(data, hits).entry

    def find_exact(self, scope: str, query: str) -> Entry | None:
        """The live entry of `scope` whose normalised query equals that of `query`."""
        self._check_open()
        entry_id = self._table.holder(exact_key(scope, query))
        entry = None if entry_id is None else self._entry_or_none(entry_id)
        if entry is None or entry.scope != scope or entry.expired():
            return None
        return entry if normalise_text(entry.query) == normalise_text(query) else None

    def search(self, scope: str, vector: np.ndarray, k: int = 10) -> list[tuple[Entry, float]]:
        """Up to k live, unexpired entries of `scope` nearest to `vector`, best first, with cosine scores."""
        self._check_open()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        query = normalised(vector, self.dim)
        now = time.time()
        fetch = k
        while True:
            found = self._index.search(scope, query, fetch)
            results = []
            candidates = self._table.entries_or_none([entry_id for entry_id, _ in found])
            for (_, score), entry in zip(found, candidates, strict=True):
                if entry is not None and entry.scope == scope and not entry.expired(now):
                    results.append((entry, score))
            if len(results) >= k or len(found) < fetch:
                return results[:k]
            fetch *= 4

    def record_hit(self, entry_id: str) -> bool:
        """Count one served hit; False when the entry does not exist."""
        self._check_writable()
        key = entry_id.encode()
        with self._write_lock:
            self._check_open()
            if self._db.cf["entries"].get(key) is None:
                return False
            count, _ = decode_hits(self._db.cf["hits"].get(key))
            batch = self._db.batch()
            batch.put(key, encode_hits(count + 1, time.time()), self._db.handle("hits"))
            self._db.write(batch)
            return True

    def delete(self, entry_id: str) -> bool:
        """Remove the entry, its exact-text key and the blob stored with it; False if it was absent."""
        return self._delete_ids([entry_id]) == 1

    def invalidate(
        self,
        *,
        ids: Iterable[str] | None = None,
        scope: str | None = None,
        substring: str | None = None,
        older_than: float | None = None,
    ) -> int:
        """Delete the entries that match every given filter; returns how many.

        substring matches the normalised query; older_than is an age in seconds (created before now - it).
        """
        self._check_writable()
        if ids is None and scope is None and substring is None and older_than is None:
            raise ValueError("invalidate needs at least one of ids, scope, substring, older_than")
        if older_than is not None and (not math.isfinite(older_than) or older_than < 0):
            raise ValueError("older_than must be a non-negative number of seconds")
        if isinstance(ids, str):
            raise ValueError("ids must be a collection of entry ids, not a single string")
        if substring is not None and not normalise_text(substring):
            raise ValueError("substring must contain some text (an empty one would match everything)")
        needle = normalise_text(substring) if substring is not None else None
        cutoff = time.time() - older_than if older_than is not None else None
        wanted = set(ids) if ids is not None else None
        candidates: Iterable[Entry]
        if wanted is not None:
            candidates = (e for e in self._table.entries_or_none(sorted(wanted)) if e is not None)
        else:
            candidates = self._table.iter_entries(scope)
        doomed = [
            e.id
            for e in candidates
            if (scope is None or e.scope == scope)
            and (needle is None or needle in normalise_text(e.query))
            and (cutoff is None or e.created < cutoff)
        ]
        return self._delete_ids(doomed)

    def entries(
        self, scope: str | None = None, limit: int = 100, offset: int = 0, text: str | None = None
    ) -> list[Entry]:
        """A page of entries with hit counts (expired included), optionally of one scope and containing
        `text` (in the query or the answer)."""
        self._check_open()
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        needle = normalise_text(text) if text else None
        page: list[Entry] = []
        skipped = 0
        for entry in self._table.iter_entries(scope):
            if needle is not None and needle not in normalise_text(entry.query + " " + entry.answer):
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(page) >= limit:
                break
            page.append(entry)
        return self._table.with_hits(page)

    # ---- KV blobs ------------------------------------------------------------------------------

    def put_blob(self, blob: KVBlob) -> str:
        """Store a blob that belongs to no entry (it stays until delete_blob); returns its id."""
        self._check_writable()
        blob_id = uuid.uuid4().hex
        batch = self._db.batch()
        batch.put(blob_id.encode(), BLOB_STANDALONE + blob.to_bytes(), self._db.handle("blobs"))
        with self._write_lock:
            self._check_open()
            self._db.write(batch)
        return blob_id

    def get_blob(self, blob_id: str) -> KVBlob:
        """The verified blob; KeyError when absent, CorruptBlobError when its bytes are damaged."""
        # Imported here so that processes that never read blobs never load torch.
        from precog.store.kvblob import CorruptBlobError, KVBlob

        self._check_open()
        try:
            data = self._db.cf["blobs"].get(blob_id.encode())
        except StoreReadError as exc:
            raise CorruptBlobError(f"blob {blob_id} cannot be read: {exc}") from exc
        if data is None:
            raise KeyError(blob_id)
        if data[:1] not in (BLOB_OF_ENTRY, BLOB_STANDALONE):
            raise CorruptBlobError(f"blob {blob_id} has an unknown owner tag")
        return KVBlob.from_bytes(data[1:])

    def delete_blob(self, blob_id: str) -> bool:
        self._check_writable()
        key = blob_id.encode()
        with self._write_lock:
            self._check_open()
            if self._db.cf["blobs"].get(key) is None:
                return False
            batch = self._db.batch()
            batch.delete(key, self._db.handle("blobs"))
            self._db.write(batch)
            return True

    # ---- maintenance ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts (entries, expired, per scope), logical bytes by part, bytes on disk, index memory."""
        self._check_open()
        return collect_stats(self._db, self._index, self.path, self.embedding_model, self.dim)

    def index_info(self) -> dict[str, Any]:
        """Vector index shape without scanning records: per-scope kind/vectors/tombstones, memory bytes."""
        self._check_open()
        return {"scopes": index_info(self._index), "memory_bytes": self._index.memory_bytes}

    def verify(self) -> VerifyReport:
        """Check every record, vector and blob; problems are reported, never raised."""
        self._check_open()
        return verify_store(self._db, self._index, self.dim)

    def rebuild_index(self) -> None:
        """Rebuild every scope's index from the records (and save it, for writers)."""
        self._check_open()
        with self._write_lock:
            self._index = build_index(self._db, self.dim, self._params, self._progress)
            if not self.read_only:
                self._save_index()

    def save_index(self) -> None:
        """Persist the vector index now, so a crash later does not force a rebuild on open."""
        self._check_writable()
        with self._write_lock:
            self._save_index()

    def compact(self) -> dict[str, int]:
        """Drop expired entries and blobs no entry owns any more, shrink indexes, compact RocksDB."""
        self._check_writable()
        now = time.time()
        expired = [e.id for e in self._table.iter_entries(None) if e.expired(now)]
        removed = self._delete_ids(expired)
        with self._write_lock:
            referenced = {e.kv_blob_id for e in self._table.iter_entries(None) if e.kv_blob_id}
            batch = self._db.batch()
            orphans = 0
            for key, value in self._db.cf["blobs"].items():
                if value[:1] == BLOB_OF_ENTRY and key.decode() not in referenced:
                    batch.delete(key, self._db.handle("blobs"))
                    orphans += 1
            if orphans:
                self._db.write(batch)
            for scope in self._index.scopes():
                scope_index = self._index.scope(scope)
                if scope_index is not None and scope_index.tombstones:
                    ids, vectors = scope_index.live_vectors()
                    self._index.put_loaded(scope, ScopeIndex.build(self.dim, self._params, ids, vectors))
                    self._index.mark_dirty({scope})
            self._db.compact()
            self._save_index()
        return {"expired_entries": removed, "orphan_blobs": orphans}

    def export(self, dest: str | Path) -> Path:
        """Write a consistent copy of the store to a new directory, or to a .tar.gz file."""
        self._check_open()
        with self._write_lock:
            if not self.read_only:
                self._save_index()
            return archive.export_store(self._db, self.path / INDEX_DIR, Path(dest))

    @staticmethod
    def import_(src: str | Path, dest: str | Path) -> VerifyReport:
        """Unpack an exported store (directory or .tar.gz) into `dest` and verify it there."""
        target = archive.import_store(Path(src), Path(dest))
        try:
            model, dim = stored_identity(target)
            with Store.open(target, embedding_model=model, dim=dim, create=False, progress=False) as store:
                report = store.verify()
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        if not report.ok:
            shutil.rmtree(target, ignore_errors=True)
            raise StoreError(f"imported store failed verification: {report.summary()}")
        return report

    # ---- internals -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store at {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyStoreError(f"store at {self.path} was opened read-only")

    def _delete_ids(self, ids: list[str]) -> int:
        self._check_writable()
        deleted = 0
        for start in range(0, len(ids), _DELETE_CHUNK):
            with self._write_lock:
                self._check_open()
                batch = self._db.batch()
                gone: list[StoredEntry] = []
                for old in self._table.stored(list(dict.fromkeys(ids[start : start + _DELETE_CHUNK]))):
                    self._table.add_delete(batch, old)
                    gone.append(old)
                if not gone:
                    continue
                self._commit(batch, [(old.entry.scope, old.entry.id) for old in gone])
                by_scope: dict[str, list[str]] = defaultdict(list)
                for old in gone:
                    by_scope[old.entry.scope].append(old.entry.id)
                for scope, scope_ids in by_scope.items():
                    self._index.remove(scope, scope_ids)
                deleted += len(gone)
        return deleted

    def _commit(self, batch: Any, touched: list[tuple[str, str]]) -> None:
        """Write a batch that changes vectors: bump the epoch (what a saved index is checked against)
        and log the (scope, id) pairs it touches (what a saved index catches up with)."""
        batch.put(b"epoch", encode_u64(self._epoch + 1), self._db.handle("meta"))
        record_change(self._db, batch, self._epoch + 1, touched)
        self._db.write(batch)
        self._epoch += 1

    def _entry_or_none(self, entry_id: str) -> Entry | None:
        return self._table.entries_or_none([entry_id])[0]

    def _open_index(self) -> VectorIndex:
        """The saved index, caught up through the change log when it is behind; else a rebuild."""
        if self._epoch == 0:
            return VectorIndex(self.dim, self._params)
        started = time.perf_counter()
        try:
            index, saved = load_index(
                self.path / INDEX_DIR, self._epoch, self.embedding_model, self.dim, self._params
            )
            if saved < self._epoch:
                touched = touched_since(self._db, saved, self._epoch)
                if touched is None:
                    raise IndexUnusableError(f"index is stale (epoch {saved}, records at {self._epoch})")
                catch_up(index, self._db, touched, self.dim)
            log.info(
                "vector index loaded",
                extra={
                    "vectors": len(index),
                    "caught_up_epochs": self._epoch - saved,
                    "seconds": time.perf_counter() - started,
                },
            )
            return index
        except IndexUnusableError as exc:
            log.warning("rebuilding vector index", extra={"reason": str(exc)})
            index = build_index(self._db, self.dim, self._params, self._progress)
            if not self.read_only:
                self._save_index(index)
            return index

    def _save_index(self, index: VectorIndex | None = None) -> None:
        """Save the index at the current epoch and forget the change log it now covers."""
        try:
            save_index(
                self._index if index is None else index,
                self.path / INDEX_DIR,
                self._epoch,
                self.embedding_model,
            )
        except OSError as exc:
            log.error("vector index not saved; it will be rebuilt on next open", extra={"error": str(exc)})
            return
        try:
            forget_until(self._db, self._epoch)
        except StoreWriteError as exc:
            log.error("change log not trimmed; it will be on the next save", extra={"error": str(exc)})
