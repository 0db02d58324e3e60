"""Checks on an entry before any of it is written: a bad field must never reach RocksDB or FAISS."""

from __future__ import annotations

import math

import numpy as np

from store.entry import Entry
from store.records import check_id
from store.vectors import normalised


def validated_embedding(entry: Entry, dim: int) -> np.ndarray:
    """Raise ValueError naming the first bad field; return the entry's unit embedding."""
    check_id("entry id", entry.id)
    if not isinstance(entry.scope, str) or not entry.scope or "\x00" in entry.scope:
        raise ValueError("entry scope must be a non-empty string without NUL characters")
    for name in ("query", "answer", "model"):
        if not isinstance(getattr(entry, name), str):
            raise ValueError(f"entry {name} must be a string")
    if not entry.query.strip():
        raise ValueError("entry query must not be empty")
    if entry.expires is not None and not math.isfinite(entry.expires):
        raise ValueError("entry expires must be a finite epoch time or None")
    if not math.isfinite(entry.created):
        raise ValueError("entry created must be a finite epoch time")
    if entry.kv_blob_id is not None:
        check_id("kv_blob_id", entry.kv_blob_id)
    return normalised(entry.embedding, dim)
