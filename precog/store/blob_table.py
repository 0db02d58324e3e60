"""KV blobs in RocksDB's `blobs` column family (BlobDB: large values live in blob files, so compaction
does not rewrite them).

Keys: a blob id (uuid hex) -> an owner tag byte, then the blob's manifest (or, from older stores, a whole
format-1 blob); `blk/<hash>` -> one content-addressed block of KV (see kv_blocks); `ref/<hash>` -> how many
manifests name that block. A blob stored with an entry (tag E) is deleted with it; one stored on its own
(tag S) stays until it is deleted by id. A block goes in the batch that removes its last reference. A tag E
blob that no entry names (older stores may hold some) is an orphan that `sweep` removes; `sweep` also
recounts every block's references from the manifests, so no crash or older bug can leak a block for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Set
from typing import TYPE_CHECKING, Any

from precog.store.db import Database
from precog.store.errors import StoreReadError
from precog.store.records import StoredEntry, decode_u64, encode_u64

if TYPE_CHECKING:
    from precog.store.kv_blocks import EncodedBlob
    from precog.store.kvblob import KVBlob

BLOB_OF_ENTRY = b"E"
BLOB_STANDALONE = b"S"
BLOCK_PREFIX = b"blk/"
REF_PREFIX = b"ref/"


def is_blob_id(key: bytes) -> bool:
    return not key.startswith((BLOCK_PREFIX, REF_PREFIX))


class BlockRefs:
    """Reference counts of KV blocks as one write batch changes them: read once, written by `flush`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._counts: dict[bytes, int] = {}
        self._new: dict[bytes, bytes] = {}

    def _count(self, key: bytes) -> int:
        if key not in self._counts:
            raw = self._db.cf["blobs"].get(REF_PREFIX + key)
            self._counts[key] = 0 if raw is None else decode_u64(raw)
        return self._counts[key]

    def add(self, key: bytes, data: bytes) -> None:
        if self._count(key) == 0:
            self._new[key] = data
        self._counts[key] += 1

    def remove(self, key: bytes) -> None:
        self._counts[key] = max(0, self._count(key) - 1)

    def flush(self, batch: Any) -> None:
        handle = self._db.handle("blobs")
        for key, count in self._counts.items():
            if count == 0:
                batch.delete(BLOCK_PREFIX + key, handle)
                batch.delete(REF_PREFIX + key, handle)
                continue
            batch.put(REF_PREFIX + key, encode_u64(count), handle)
            if key in self._new:
                batch.put(BLOCK_PREFIX + key, self._new[key], handle)
        self._counts, self._new = {}, {}


class BlobTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_put(self, batch: Any, blob: EncodedBlob, owner: bytes, refs: BlockRefs) -> str:
        """Add a blob (`BLOB_OF_ENTRY` or `BLOB_STANDALONE`) to `batch`; returns its new id. The caller
        flushes `refs` into the batch before writing it."""
        blob_id = uuid.uuid4().hex
        for key, data in blob.blocks:
            refs.add(key, data)
        batch.put(blob_id.encode(), owner + blob.manifest, self._db.handle("blobs"))
        return blob_id

    def add_delete(self, batch: Any, blob_id: str, refs: BlockRefs) -> bool:
        """Add the removal of the blob (its blocks lose a reference) to `batch`; False when it is absent."""
        from precog.store.kv_blocks import Manifest, is_manifest
        from precog.store.kvblob import CorruptBlobError

        data = self._db.cf["blobs"].get(blob_id.encode())
        if data is None:
            return False
        if is_manifest(data[1:]):
            try:
                for key in Manifest.from_bytes(data[1:]).blocks:
                    refs.remove(key)
            except CorruptBlobError:
                pass  # its blocks lose this reference at the next sweep
        batch.delete(blob_id.encode(), self._db.handle("blobs"))
        return True

    def add_entry_delete(self, batch: Any, old: StoredEntry, refs: BlockRefs) -> None:
        """Add the removal of the blob stored with `old` (if it owns one) to `batch`."""
        if old.owns_blob and old.entry.kv_blob_id:
            self.add_delete(batch, old.entry.kv_blob_id, refs)

    def write_standalone(self, blob: EncodedBlob) -> str:
        """Write a blob of no entry now, in a batch of its own; returns its id."""
        batch, refs = self._db.batch(), BlockRefs(self._db)
        blob_id = self.add_put(batch, blob, BLOB_STANDALONE, refs)
        refs.flush(batch)
        self._db.write(batch)
        return blob_id

    def delete_by_id(self, blob_id: str) -> bool:
        """Remove a blob (and the blocks only it named) now; False when it is absent."""
        batch, refs = self._db.batch(), BlockRefs(self._db)
        if not is_blob_id(blob_id.encode()) or not self.add_delete(batch, blob_id, refs):
            return False
        refs.flush(batch)
        self._db.write(batch)
        return True

    def get(self, blob_id: str) -> KVBlob:
        """The verified blob; KeyError when absent, CorruptBlobError when its bytes are damaged."""
        # Imported here so that processes that never read blobs never load torch.
        from precog.store.kv_blocks import Manifest, decode_blob, is_manifest
        from precog.store.kvblob import CorruptBlobError, KVBlob

        try:
            data = self._db.cf["blobs"].get(blob_id.encode()) if is_blob_id(blob_id.encode()) else None
            if data is None:
                raise KeyError(blob_id)
            if data[:1] not in (BLOB_OF_ENTRY, BLOB_STANDALONE):
                raise CorruptBlobError(f"blob {blob_id} has an unknown owner tag")
            if not is_manifest(data[1:]):
                return KVBlob.from_bytes(data[1:])
            manifest = Manifest.from_bytes(data[1:])
            blocks = self._db.cf["blobs"].get_many([BLOCK_PREFIX + key for key in manifest.blocks])
        except StoreReadError as exc:
            raise CorruptBlobError(f"blob {blob_id} cannot be read: {exc}") from exc
        return decode_blob(manifest, blocks)

    def sweep(self, batch: Any, referenced: Set[str]) -> tuple[int, int]:
        """Remove entry-owned blobs no id in `referenced` names, recount every block's references from the
        remaining manifests and remove unreferenced blocks; returns (orphan blobs, blocks freed)."""
        from precog.store.kv_blocks import Manifest, is_manifest
        from precog.store.kvblob import CorruptBlobError

        handle = self._db.handle("blobs")
        orphans, counts, stored = 0, dict[bytes, int](), dict[bytes, int]()
        for key, value in self._db.cf["blobs"].items():
            if key.startswith(REF_PREFIX):
                stored[key[len(REF_PREFIX) :]] = decode_u64(value)
            elif key.startswith(BLOCK_PREFIX):
                counts.setdefault(key[len(BLOCK_PREFIX) :], 0)
            elif value[:1] == BLOB_OF_ENTRY and key.decode() not in referenced:
                batch.delete(key, handle)
                orphans += 1
            elif is_manifest(value[1:]):
                try:
                    for block in Manifest.from_bytes(value[1:]).blocks:
                        counts[block] = counts.get(block, 0) + 1
                except CorruptBlobError:
                    continue
        for block in stored.keys() - counts.keys():
            batch.delete(REF_PREFIX + block, handle)
        freed = 0
        for block, count in counts.items():
            if count == 0:
                batch.delete(BLOCK_PREFIX + block, handle)
                batch.delete(REF_PREFIX + block, handle)
                freed += 1
            elif count != stored.get(block):
                batch.put(REF_PREFIX + block, encode_u64(count), handle)
        return orphans, freed
