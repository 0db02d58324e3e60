"""The Store facade: entries in RocksDB, their vectors in per-scope FAISS indexes, KV blobs beside them.

Every entry is written in one RocksDB WriteBatch together with its exact-text key, its KV blob and the
bumped vector epoch, so a crash leaves either all of it or none. The FAISS index is derived data; it is
updated after the batch commits, saved on close, and rebuilt from the records when it does not match.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from precog.store import archive
from precog.store.blob_table import BLOB_OF_ENTRY, BlobTable, BlockRefs
from precog.store.change_log import record_change
from precog.store.db import INDEX_DIR, Database, stored_identity
from precog.store.derived_index import open_index, persist_index
from precog.store.embedding import MODEL_DIM, MODEL_NAME
from precog.store.entry import Entry
from precog.store.entry_table import EntryTable
from precog.store.errors import ReadOnlyStoreError, StoreError
from precog.store.index_build import build_index
from precog.store.kv_formats import KVFormat, check_format
from precog.store.records import StoredEntry, encode_u64, exact_key
from precog.store.scope import normalise_text
from precog.store.scope_index import IndexParams
from precog.store.selection import Selection
from precog.store.stats import collect_stats, index_info
from precog.store.text_index import TextIndex
from precog.store.validation import prepared_puts
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
        kv_format: KVFormat = "float32",
    ) -> None:
        self.path = path
        self.embedding_model = embedding_model
        self.dim = dim
        self.read_only = db.read_only
        self._db = db
        self._epoch = epoch
        self._params = params
        self._progress = progress
        self.kv_format = kv_format
        self._write_lock = threading.RLock()
        self._closed = False
        self._loaded_index: VectorIndex | None = None
        self._table = EntryTable(db, lambda entry_id: self._index.scope_of(entry_id))
        self._blobs = BlobTable(db)
        self._text_index = TextIndex(self._table)
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
        kv_format: str = "float32",
    ) -> Store:
        """Open (or create) the store at `path`.

        read_only: many processes may read while one writes; the reader sees the records as of opening.
        sync: fsync every write (survives power loss, not just a killed process) at a large cost per put.
        kv_format: how KV blobs put from now on are kept (`kv_codec.KV_FORMATS`; float32 is lossless).
        """
        fmt = check_format(kv_format)
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
            return cls(path, db, embedding_model, dim, meta.epoch, params, progress, fmt)
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
        puts = prepared_puts(entries, blobs, self.dim, self.kv_format)
        new_ids = {p.entry.id for p in puts}
        claimed = {p.exact for p in puts}
        with self._write_lock:
            self._check_open()
            batch, refs = self._db.batch(), BlockRefs(self._db)
            replaced: dict[str, StoredEntry] = {}
            written = [p.entry for p in puts]
            for put in puts:
                stored, holder = put.entry, self._table.holder(put.exact)
                old_ids = {stored.id} | ({holder} - new_ids if holder is not None else set())
                for old in self._table.stored(sorted(old_ids - set(replaced))):
                    self._table.add_delete(batch, old, claimed)
                    self._blobs.add_entry_delete(batch, old, refs)
                    replaced[old.entry.id] = old
                if put.blob is not None:
                    stored.kv_blob_id = self._blobs.add_put(batch, put.blob, BLOB_OF_ENTRY, refs)
                self._table.add_put(batch, stored, put.exact, owns_blob=put.blob is not None)
            touched = [(old.entry.scope, old.entry.id) for old in replaced.values()]
            self._commit(batch, touched + [(e.scope, e.id) for e in written], refs)
            self._index.remove_entries([old.entry for old in replaced.values()])
            self._index.add_entries(written)
        for entry, stored in zip(entries, written, strict=True):
            entry.embedding = stored.embedding
            entry.kv_blob_id = stored.kv_blob_id
        return [entry.id for entry in entries]

    def get(self, entry_id: str) -> Entry | None:
        """The entry (expired or not), or None; CorruptRecordError if its record is damaged."""
        self._check_open()
        return self._table.get(entry_id)

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
        fetch = k
        while True:
            found = self._index.search(scope, query, fetch)
            results = self._table.live_in_scope(found, scope)
            if len(results) >= k or len(found) < fetch:
                return results[:k]
            fetch *= 4

    def search_text(self, scope: str, text: str, k: int = 10) -> list[tuple[Entry, float]]:
        """Up to k live, unexpired entries of `scope` whose question and answer together best match the
        words of `text` (BM25), best first, with BM25 scores (see `text_index`)."""
        self._check_open()
        return self._text_index.search(scope, text, k, self._epoch)

    def record_hit(self, entry_id: str) -> bool:
        """Count one served hit; False when the entry does not exist."""
        self._check_writable()
        with self._write_lock:
            self._check_open()
            if not self._table.exists(entry_id):
                return False
            batch = self._db.batch()
            self._table.add_hit(batch, entry_id, time.time())
            self._db.write(batch, durable=False)
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
        selection = Selection.of(ids, scope, substring, older_than, time.time())
        candidates: Iterable[Entry]
        if selection.ids is not None:
            candidates = (e for e in self._table.entries_or_none(sorted(selection.ids)) if e is not None)
        else:
            candidates = self._table.iter_entries(scope)
        return self._delete_ids([e.id for e in candidates if selection.matches(e)])

    def entries(
        self, scope: str | None = None, limit: int = 100, offset: int = 0, text: str | None = None
    ) -> list[Entry]:
        """A page of entries with hit counts (expired included), optionally of one scope and containing
        `text` (in the query or the answer)."""
        self._check_open()
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        needle = normalise_text(text) if text else None
        found = (
            e
            for e in self._table.iter_entries(scope)
            if needle is None or needle in normalise_text(e.query + " " + e.answer)
        )
        return self._table.with_hits(list(itertools.islice(found, offset, offset + limit)))

    # ---- KV blobs ------------------------------------------------------------------------------

    def put_blob(self, blob: KVBlob) -> str:
        """Store a blob that belongs to no entry (it stays until delete_blob); returns its id."""
        self._check_writable()
        from precog.store.kv_blocks import encode_blob

        encoded = encode_blob(blob, self.kv_format)
        with self._write_lock:
            self._check_open()
            return self._blobs.write_standalone(encoded)

    def get_blob(self, blob_id: str) -> KVBlob:
        """The verified blob; KeyError when absent, CorruptBlobError when its bytes are damaged."""
        self._check_open()
        return self._blobs.get(blob_id)

    def delete_blob(self, blob_id: str) -> bool:
        self._check_writable()
        with self._write_lock:
            self._check_open()
            return self._blobs.delete_by_id(blob_id)

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
        """Drop expired entries, orphan blobs and unnamed KV blocks, shrink indexes, compact RocksDB."""
        self._check_writable()
        now = time.time()
        expired = [e.id for e in self._table.iter_entries(None) if e.expired(now)]
        removed = self._delete_ids(expired)
        with self._write_lock:
            referenced = {e.kv_blob_id for e in self._table.iter_entries(None) if e.kv_blob_id}
            batch = self._db.batch()
            orphans, freed_blocks = self._blobs.sweep(batch, referenced)
            self._db.write(batch)
            self._index.drop_tombstones()
            self._db.compact()
            self._save_index()
        return {"expired_entries": removed, "orphan_blobs": orphans, "freed_blocks": freed_blocks}

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
        return archive.import_store(Path(src), Path(dest), Store._verified)

    @staticmethod
    def _verified(path: Path) -> VerifyReport:
        model, dim = stored_identity(path)
        with Store.open(path, embedding_model=model, dim=dim, create=False, progress=False) as store:
            return store.verify()

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
                batch, refs = self._db.batch(), BlockRefs(self._db)
                gone: list[StoredEntry] = []
                for old in self._table.stored(list(dict.fromkeys(ids[start : start + _DELETE_CHUNK]))):
                    self._table.add_delete(batch, old)
                    self._blobs.add_entry_delete(batch, old, refs)
                    gone.append(old)
                if not gone:
                    continue
                self._commit(batch, [(old.entry.scope, old.entry.id) for old in gone], refs)
                self._index.remove_entries([old.entry for old in gone])
                deleted += len(gone)
        return deleted

    def _commit(self, batch: Any, touched: list[tuple[str, str]], refs: BlockRefs) -> None:
        """Write a batch that changes vectors: bump the epoch (what a saved index is checked against),
        log the (scope, id) pairs it touches (what a saved index catches up with), count block refs."""
        refs.flush(batch)
        batch.put(b"epoch", encode_u64(self._epoch + 1), self._db.handle("meta"))
        record_change(self._db, batch, self._epoch + 1, touched)
        self._db.write(batch)
        self._epoch += 1

    def _entry_or_none(self, entry_id: str) -> Entry | None:
        return self._table.entries_or_none([entry_id])[0]

    def _open_index(self) -> VectorIndex:
        folder = self.path / INDEX_DIR
        return open_index(
            self._db, folder, self._epoch, self.embedding_model, self.dim, self._params, self._progress
        )

    def _save_index(self) -> None:
        persist_index(self._index, self._db, self.path / INDEX_DIR, self._epoch, self.embedding_model)
