"""KV blobs in RocksDB's `blobs` column family: an owner tag byte, then the blob's bytes.

A blob stored with an entry (tag E) is deleted with it; one stored on its own (tag S) stays until it is
deleted by id. A tag E blob that no entry names any more (a crash between two batches cannot make one, but
older stores may hold some) is an orphan that `compact` removes.
"""

from __future__ import annotations

import uuid
from collections.abc import Set
from typing import TYPE_CHECKING, Any

from precog.store.db import Database
from precog.store.errors import StoreReadError

if TYPE_CHECKING:
    from precog.store.kvblob import KVBlob

BLOB_OF_ENTRY = b"E"
BLOB_STANDALONE = b"S"


class BlobTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_put(self, batch: Any, data: bytes, owner: bytes) -> str:
        """Add a blob (its bytes, `BLOB_OF_ENTRY` or `BLOB_STANDALONE`) to `batch`; returns its new id."""
        blob_id = uuid.uuid4().hex
        batch.put(blob_id.encode(), owner + data, self._db.handle("blobs"))
        return blob_id

    def add_delete(self, batch: Any, blob_id: str) -> None:
        batch.delete(blob_id.encode(), self._db.handle("blobs"))

    def exists(self, blob_id: str) -> bool:
        return self._db.cf["blobs"].get(blob_id.encode()) is not None

    def get(self, blob_id: str) -> KVBlob:
        """The verified blob; KeyError when absent, CorruptBlobError when its bytes are damaged."""
        # Imported here so that processes that never read blobs never load torch.
        from precog.store.kvblob import CorruptBlobError, KVBlob

        try:
            data = self._db.cf["blobs"].get(blob_id.encode())
        except StoreReadError as exc:
            raise CorruptBlobError(f"blob {blob_id} cannot be read: {exc}") from exc
        if data is None:
            raise KeyError(blob_id)
        if data[:1] not in (BLOB_OF_ENTRY, BLOB_STANDALONE):
            raise CorruptBlobError(f"blob {blob_id} has an unknown owner tag")
        return KVBlob.from_bytes(data[1:])

    def add_orphan_deletes(self, batch: Any, referenced: Set[str]) -> int:
        """Add the removal of every entry-owned blob no entry in `referenced` names; returns how many."""
        orphans = 0
        for key, value in self._db.cf["blobs"].items():
            if value[:1] == BLOB_OF_ENTRY and key.decode() not in referenced:
                batch.delete(key, self._db.handle("blobs"))
                orphans += 1
        return orphans
