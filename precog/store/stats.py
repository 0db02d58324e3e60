"""The numbers `Store.stats()` reports: counts by scope, expired entries, bytes by part."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from precog.store.blob_table import BLOCK_PREFIX, is_blob_id
from precog.store.db import DB_DIR, INDEX_DIR, Database
from precog.store.index_files import index_disk_bytes
from precog.store.records import CorruptRecordError, decode_entry
from precog.store.vector_index import VectorIndex


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def collect_stats(
    db: Database, index: VectorIndex, path: Path, embedding_model: str, dim: int
) -> dict[str, Any]:
    """One scan of the records and blobs; `bytes` are logical sizes, then sizes on disk and in memory."""
    now = time.time()
    per_scope: dict[str, int] = defaultdict(int)
    per_source: dict[str, int] = defaultdict(int)
    entries = expired = corrupt = record_bytes = 0
    for key, value in db.cf["entries"].items():
        entries += 1
        record_bytes += len(key) + len(value)
        try:
            entry = decode_entry(value).entry
        except CorruptRecordError:
            corrupt += 1
            continue
        per_scope[entry.scope] += 1
        per_source[entry.meta.get("file", f"({entry.source})")] += 1
        expired += entry.expired(now)
    blob_count = block_count = blob_bytes = 0
    for key, value in db.cf["blobs"].items():
        blob_count += is_blob_id(key)
        block_count += key.startswith(BLOCK_PREFIX)
        blob_bytes += len(key) + len(value)
    return {
        "path": str(path),
        "embedding_model": embedding_model,
        "dim": dim,
        "entries": entries,
        "expired": expired,
        "corrupt": corrupt,
        "blobs": blob_count,
        "kv_blocks": block_count,
        "scopes": dict(sorted(per_scope.items(), key=lambda item: -item[1])),
        "sources": dict(sorted(per_source.items(), key=lambda item: (-item[1], item[0]))),
        "bytes": {
            "records": record_bytes,
            "vectors": entries * dim * 4,
            "blobs": blob_bytes,
            "db_on_disk": _directory_bytes(path / DB_DIR),
            "index_on_disk": index_disk_bytes(path / INDEX_DIR),
            "index_in_memory": index.memory_bytes,
        },
        "index": index_info(index),
    }


def index_info(index: VectorIndex) -> dict[str, dict[str, Any]]:
    """Per scope: index kind, live vectors, tombstones (no record scan: cheap enough for metrics)."""
    return {
        scope: {"kind": scope_index.kind, "vectors": len(scope_index), "tombstones": scope_index.tombstones}
        for scope, scope_index in index.scopes().items()
    }
