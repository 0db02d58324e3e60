"""The on-disk truth: entry records (RocksDB), the vector index (FAISS), KV-cache blobs, snapshots.

Heavy parts (torch through KVBlob, FAISS, sentence-transformers) load on first use of their name, so
that importing this package (e.g. for `precog --help`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.embedding import MODEL_DIM, MODEL_NAME, Embedder
    from store.entry import Entry, Source
    from store.errors import (
        EmbeddingMismatchError,
        NotAStoreError,
        ReadOnlyStoreError,
        StoreError,
        StoreReadError,
        StoreWriteError,
    )
    from store.kvblob import CorruptBlobError, KVBlob
    from store.records import CorruptRecordError
    from store.scope import Turn, normalise_text, scope_key
    from store.scope_index import IndexParams
    from store.snapshots import SnapshotInfo, current_snapshot, publish_snapshot, read_snapshot
    from store.store import Store
    from store.verify import Problem, VerifyReport

_EXPORTS = {
    "Embedder": "store.embedding",
    "MODEL_DIM": "store.embedding",
    "MODEL_NAME": "store.embedding",
    "Entry": "store.entry",
    "Source": "store.entry",
    "EmbeddingMismatchError": "store.errors",
    "NotAStoreError": "store.errors",
    "ReadOnlyStoreError": "store.errors",
    "StoreError": "store.errors",
    "StoreReadError": "store.errors",
    "StoreWriteError": "store.errors",
    "CorruptBlobError": "store.kvblob",
    "KVBlob": "store.kvblob",
    "CorruptRecordError": "store.records",
    "Turn": "store.scope",
    "normalise_text": "store.scope",
    "scope_key": "store.scope",
    "IndexParams": "store.scope_index",
    "SnapshotInfo": "store.snapshots",
    "current_snapshot": "store.snapshots",
    "publish_snapshot": "store.snapshots",
    "read_snapshot": "store.snapshots",
    "Store": "store.store",
    "Problem": "store.verify",
    "VerifyReport": "store.verify",
}

__all__ = [
    "MODEL_DIM",
    "MODEL_NAME",
    "CorruptBlobError",
    "CorruptRecordError",
    "Embedder",
    "EmbeddingMismatchError",
    "Entry",
    "IndexParams",
    "KVBlob",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
