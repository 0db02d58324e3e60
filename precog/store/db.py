"""The RocksDB half of a store: directory layout, column families, and the metadata that identifies it.

Layout of a store directory: `db/` (RocksDB) and `index/` (FAISS files, derived from `db/`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import rocksdict

from precog.store.errors import (
    EmbeddingMismatchError,
    NotAStoreError,
    StoreError,
    StoreReadError,
    StoreWriteError,
)
from precog.store.records import decode_u64, encode_u64

FORMAT = b"precog-store/1"
COLUMN_FAMILIES = ("entries", "blobs", "exact", "hits", "meta", "changes")
DB_DIR = "db"
INDEX_DIR = "index"
CREATING_DIR = "db.creating"


@dataclass(frozen=True, slots=True)
class StoreMeta:
    embedding_model: str
    dim: int
    epoch: int
    created: float


_MIN_BLOB_BYTES = 4096


def _options(create: bool, blob_files: bool = False) -> rocksdict.Options:
    """blob_files: BlobDB, for the KV blocks: values of 4 KiB and more go to blob files that compaction
    leaves alone (their space comes back through blob garbage collection)."""
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(create)
    options.create_missing_column_families(create)
    if blob_files:
        options.set_enable_blob_files(True)
        options.set_min_blob_size(_MIN_BLOB_BYTES)
        options.set_enable_blob_gc(True)
    return options


def is_store(path: Path) -> bool:
    return (path / DB_DIR / "CURRENT").is_file()


class Column:
    """One column family in raw mode: bytes keys to bytes values (typed, unlike rocksdict's own API).

    RocksDB read failures (checksum mismatches, I/O errors) surface as StoreReadError.
    """

    def __init__(self, name: str, rdict: Any) -> None:
        self.name = name
        self._rdict = rdict

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # rocksdict raises plain Exception for every RocksDB status
            raise StoreReadError(f"reading column family {self.name!r} failed: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        with self._reading():
            return cast(bytes | None, self._rdict.get(key))

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        with self._reading():
            return cast(list[bytes | None], self._rdict[keys])

    def items(self, from_key: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Key order from `from_key`; unlike rocksdict's items(), a read error mid-scan raises."""
        with self._reading():
            cursor = self._rdict.iter()
            if from_key is None:
                cursor.seek_to_first()
            else:
                cursor.seek(from_key)
            while cursor.valid():
                yield cast(bytes, cursor.key()), cast(bytes, cursor.value())
                cursor.next()
            cursor.status()

    def values(self) -> Iterator[bytes]:
        return (value for _, value in self.items())

    def estimated_count(self) -> int:
        return int(self._rdict.property_int_value("rocksdb.estimate-num-keys") or 0)

    def compact(self) -> None:
        self._rdict.compact_range(None, None)


def stored_identity(path: Path) -> tuple[str, int]:
    """The embedding model and dimension a store was built with, read without knowing them first."""
    _check_path(path, may_create=False)
    db = Database(path / DB_DIR, read_only=True, sync=False)
    try:
        return db.identity()
    finally:
        db.close()


def _check_path(path: Path, may_create: bool) -> bool:
    """True when a new store is to be created at `path`; NotAStoreError when the path is unusable."""
    if path.exists() and not path.is_dir():
        raise NotAStoreError(f"{path} is a file, not a store directory")
    if is_store(path):
        return False
    leftovers = {p.name for p in path.iterdir()} - {CREATING_DIR} if path.exists() else set()
    if leftovers:
        raise NotAStoreError(f"{path} is not a precog store (no {DB_DIR}/CURRENT) and is not empty")
    if not may_create:
        raise NotAStoreError(f"no store at {path} (open with create=True to make one)")
    return True


def create_store(path: Path, embedding_model: str, dim: int) -> None:
    """Build the database beside its final place and rename it in, so a crash never leaves half a store."""
    staging = path / CREATING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    db = Database(staging, read_only=False, sync=True, creating=True)
    try:
        db.init_meta(embedding_model, dim)
    finally:
        db.close()
    os.replace(staging, path / DB_DIR)


class Database:
    """Open RocksDB with the store's column families; `cf[name]` reads, `write()` commits a batch."""

    def __init__(self, db_dir: Path, *, read_only: bool, sync: bool, creating: bool = False) -> None:
        self.path = db_dir.parent
        self.read_only = read_only
        access = rocksdict.AccessType.read_only() if read_only else rocksdict.AccessType.read_write()
        families = {name: _options(creating, blob_files=name == "blobs") for name in COLUMN_FAMILIES}
        try:
            self._db = rocksdict.Rdict(
                str(db_dir), options=_options(creating), column_families=families, access_type=access
            )
        except Exception as exc:  # rocksdict raises plain Exception for every RocksDB status
            if "column famil" in str(exc).lower() or "does not exist" in str(exc).lower():
                raise NotAStoreError(
                    f"{self.path} holds a RocksDB database that is not a precog store"
                ) from exc
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"store at {self.path} is already open for writing by another process; "
                    "open it with read_only=True to read alongside that writer"
                ) from exc
            raise StoreError(f"cannot open store at {self.path}: {exc}") from exc
        self.cf = {name: Column(name, self._db.get_column_family(name)) for name in COLUMN_FAMILIES}
        self._handles = {name: self._db.get_column_family_handle(name) for name in COLUMN_FAMILIES}
        self._write_options = rocksdict.WriteOptions()
        self._write_options.sync = sync
        self._unsynced = rocksdict.WriteOptions()

    @classmethod
    def open(
        cls, path: Path, *, read_only: bool, create: bool, sync: bool, embedding_model: str, dim: int
    ) -> Database:
        """Open the store at `path`, creating it first when allowed and absent."""
        if _check_path(path, create and not read_only):
            create_store(path, embedding_model, dim)
        return cls(path / DB_DIR, read_only=read_only, sync=sync)

    def batch(self) -> rocksdict.WriteBatch:
        return rocksdict.WriteBatch(raw_mode=True)

    def handle(self, name: str) -> rocksdict.ColumnFamily:
        return self._handles[name]

    def write(self, batch: rocksdict.WriteBatch, durable: bool = True) -> None:
        """Commit atomically; StoreWriteError (nothing written) when RocksDB refuses. durable=False skips
        the fsync of a store opened with sync (for counters a crash may lose)."""
        try:
            self._db.write(batch, self._write_options if durable else self._unsynced)
        except Exception as exc:
            raise StoreWriteError(f"write to {self.path} failed and nothing of it was stored: {exc}") from exc

    def init_meta(self, embedding_model: str, dim: int) -> None:
        batch = self.batch()
        meta = self.handle("meta")
        batch.put(b"format", FORMAT, meta)
        batch.put(b"embedding_model", embedding_model.encode(), meta)
        batch.put(b"dim", encode_u64(dim), meta)
        batch.put(b"epoch", encode_u64(0), meta)
        batch.put(b"created", str(time.time()).encode(), meta)
        self.write(batch)

    def read_meta(self, embedding_model: str, dim: int) -> StoreMeta:
        """The store's identity; raises when it is not ours or was built for another embedding."""
        values = self._meta_values(b"embedding_model", b"dim", b"epoch", b"created")
        stored = StoreMeta(
            embedding_model=values[0].decode(),
            dim=decode_u64(values[1]),
            epoch=decode_u64(values[2]),
            created=float(values[3].decode()),
        )
        if (stored.embedding_model, stored.dim) != (embedding_model, dim):
            raise EmbeddingMismatchError(
                f"store at {self.path} was built with embedding model {stored.embedding_model!r} "
                f"(dim {stored.dim}); it cannot be opened with {embedding_model!r} (dim {dim}). "
                "Open it with the model it was built with, or build a new store."
            )
        return stored

    def _meta_values(self, *keys: bytes) -> list[bytes]:
        meta = self.cf["meta"]
        values = meta.get_many([b"format", *keys])
        if values[0] != FORMAT or any(value is None for value in values):
            raise NotAStoreError(f"{self.path} is a RocksDB database without precog store metadata")
        return [value for value in values[1:] if value is not None]

    def identity(self) -> tuple[str, int]:
        model, dim = self._meta_values(b"embedding_model", b"dim")
        return model.decode(), decode_u64(dim)

    def compact(self) -> None:
        for cf in self.cf.values():
            cf.compact()

    def checkpoint(self, dest: Path) -> None:
        rocksdict.Checkpoint(self._db).create_checkpoint(str(dest))

    def flush(self) -> None:
        self._db.flush()

    def close(self) -> None:
        """Close RocksDB; its lock is released only once no column family object refers to it."""
        self._db.close()
        self.cf = {}
        self._handles = {}
