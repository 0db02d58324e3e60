"""Which vectors each commit touched, so that a saved index can catch up instead of being rebuilt.

Every write batch that adds or removes vectors also writes `changes[epoch] = [[scope, id], ...]`.
An index saved at epoch E is brought to epoch N by re-reading the records of the ids touched in
E+1..N; entries saved into the index are forgotten from the log once the index is saved.
"""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from typing import Any

import numpy as np

from precog.store.db import Database
from precog.store.records import CorruptRecordError, decode_entry
from precog.store.vector_index import VectorIndex
from precog.store.vectors import normalised

_EPOCH = struct.Struct(">Q")  # big-endian, so keys sort by epoch


def record_change(db: Database, batch: Any, epoch: int, touched: list[tuple[str, str]]) -> None:
    """Add to `batch` the (scope, id) pairs whose vectors this commit adds or removes."""
    batch.put(_EPOCH.pack(epoch), json.dumps(touched).encode(), db.handle("changes"))


def forget_until(db: Database, epoch: int) -> None:
    """Drop the log up to and including `epoch` (the saved index reflects it)."""
    batch = db.batch()
    batch.delete_range(_EPOCH.pack(0), _EPOCH.pack(epoch + 1), db.handle("changes"))
    db.write(batch)


def touched_since(db: Database, saved: int, current: int) -> dict[str, set[str]] | None:
    """id -> scopes it was in, for epochs saved+1..current; None when the log has a gap."""
    touched: dict[str, set[str]] = defaultdict(set)
    expected = saved + 1
    for key, value in db.cf["changes"].items(from_key=_EPOCH.pack(expected)):
        (epoch,) = _EPOCH.unpack(key)
        if epoch > current:
            break
        if epoch != expected:
            return None
        for scope, entry_id in json.loads(value):
            touched[entry_id].add(scope)
        expected += 1
    return touched if expected == current + 1 else None


def catch_up(index: VectorIndex, db: Database, touched: dict[str, set[str]], dim: int) -> None:
    """Make the index agree with the current records for every touched id."""
    for entry_id, scopes in touched.items():
        for scope in scopes:
            index.remove(scope, [entry_id])
    ids = list(touched)
    additions: dict[str, tuple[list[str], list[np.ndarray]]] = defaultdict(lambda: ([], []))
    for entry_id, data in zip(ids, db.cf["entries"].get_many([i.encode() for i in ids]), strict=True):
        if data is None:
            continue
        try:
            entry = decode_entry(data).entry
            vector = normalised(entry.embedding, dim)
        except (CorruptRecordError, ValueError):
            continue
        scope_ids, vectors = additions[entry.scope]
        scope_ids.append(entry_id)
        vectors.append(vector)
    for scope, (scope_ids, vectors) in additions.items():
        index.add(scope, scope_ids, np.stack(vectors))
