"""The hand-off of write-backs from read-only replicas to the one store writer: a durable Redis stream.

A replica's write-back counts as acknowledged once XADD returns. Redis then holds it (with appendonly on,
across a Redis restart too) until the writer has committed it to RocksDB in a WriteBatch and XACKed it;
a writer killed in between gets it again, and storing an entry twice under its id stores it once.
Each message carries the whole entry, vector included, so the writer needs no embedding model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from precog.store import Entry, Source

WRITEBACKS = "precog:writebacks"
WRITER_GROUP = "store-writer"


def encode_entry(entry: Entry) -> dict[str, bytes]:
    """Stream fields of one entry: its fields as JSON and its vector as raw float32 bytes."""
    fields = {
        "id": entry.id,
        "scope": entry.scope,
        "query": entry.query,
        "answer": entry.answer,
        "model": entry.model,
        "created": entry.created,
        "expires": entry.expires,
        "meta": entry.meta,
        "completion_tokens": entry.completion_tokens,
    }
    vector = np.ascontiguousarray(entry.embedding, dtype=np.float32)
    return {"entry": json.dumps(fields).encode(), "vector": vector.tobytes()}


def decode_entry(fields: Mapping[Any, Any]) -> Entry:
    """The entry of a stream message (keys and values as bytes, the way redis-py returns them)."""
    data = json.loads(fields[b"entry"])
    return Entry(
        id=data["id"],
        scope=data["scope"],
        query=data["query"],
        answer=data["answer"],
        embedding=np.frombuffer(fields[b"vector"], dtype=np.float32).copy(),
        model=data["model"],
        source=Source.WRITE_BACK,
        created=float(data["created"]),
        expires=data["expires"],
        meta=dict(data["meta"]),
        completion_tokens=data.get("completion_tokens"),
    )
