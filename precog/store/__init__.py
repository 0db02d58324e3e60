"""The on-disk truth: entry records (RocksDB), the vector index (FAISS), KV-cache blobs, snapshots.

Heavy parts (torch through KVBlob, FAISS, sentence-transformers) load on first use of their name, so
that importing this package (e.g. for `precog --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precog.core import lazy_exports

if TYPE_CHECKING:
    from precog.store.embedding import MODEL_DIM, MODEL_NAME, Embedder
    from precog.store.entry import Entry, Source
    from precog.store.errors import (
        EmbeddingMismatchError,
        NotAStoreError,
        ReadOnlyStoreError,
        StoreError,
        StoreReadError,
        StoreWriteError,
    )
    from precog.store.kv_formats import KV_FORMATS, KVFormat
    from precog.store.kvblob import CorruptBlobError, KVBlob
    from precog.store.records import CorruptRecordError
    from precog.store.scope import Turn, normalise_text, scope_key
    from precog.store.scope_index import IndexParams
    from precog.store.snapshots import SnapshotInfo, current_snapshot, publish_snapshot, read_snapshot
    from precog.store.store import Store
    from precog.store.verify import Problem, VerifyReport

_EXPORTS = {
    "Embedder": "precog.store.embedding",
    "MODEL_DIM": "precog.store.embedding",
    "MODEL_NAME": "precog.store.embedding",
    "Entry": "precog.store.entry",
    "Source": "precog.store.entry",
    "EmbeddingMismatchError": "precog.store.errors",
    "NotAStoreError": "precog.store.errors",
    "ReadOnlyStoreError": "precog.store.errors",
    "StoreError": "precog.store.errors",
    "StoreReadError": "precog.store.errors",
    "StoreWriteError": "precog.store.errors",
    "KV_FORMATS": "precog.store.kv_formats",
    "KVFormat": "precog.store.kv_formats",
    "CorruptBlobError": "precog.store.kvblob",
    "KVBlob": "precog.store.kvblob",
    "CorruptRecordError": "precog.store.records",
    "Turn": "precog.store.scope",
    "normalise_text": "precog.store.scope",
    "scope_key": "precog.store.scope",
    "IndexParams": "precog.store.scope_index",
    "SnapshotInfo": "precog.store.snapshots",
    "current_snapshot": "precog.store.snapshots",
    "publish_snapshot": "precog.store.snapshots",
    "read_snapshot": "precog.store.snapshots",
    "Store": "precog.store.store",
    "Problem": "precog.store.verify",
    "VerifyReport": "precog.store.verify",
}

__all__ = [
    "KV_FORMATS",
    "MODEL_DIM",
    "MODEL_NAME",
    "CorruptBlobError",
    "CorruptRecordError",
    "Embedder",
    "EmbeddingMismatchError",
    "Entry",
    "IndexParams",
    "KVBlob",
    "KVFormat",
    "NotAStoreError",
    "Problem",
    "ReadOnlyStoreError",
    "SnapshotInfo",
    "Source",
    "Store",
    "StoreError",
    "StoreReadError",
    "StoreWriteError",
    "Turn",
    "VerifyReport",
    "current_snapshot",
    "normalise_text",
    "publish_snapshot",
    "read_snapshot",
    "scope_key",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
