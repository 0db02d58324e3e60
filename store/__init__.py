"""The on-disk truth: entry records (RocksDB), the vector index (FAISS), KV-cache blobs, snapshots."""

from store.entry import Entry, Source
from store.kvblob import CorruptBlobError, KVBlob
from store.scope import Turn, normalise_text, scope_key

__all__ = ["CorruptBlobError", "Entry", "KVBlob", "Source", "Turn", "normalise_text", "scope_key"]
