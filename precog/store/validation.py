"""Checks on an entry before any of it is written: a bad field must never reach RocksDB or FAISS."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from precog.store.entry import Entry, Source
from precog.store.records import check_id, exact_key
from precog.store.vectors import normalised

if TYPE_CHECKING:
    from precog.store.kv_blocks import EncodedBlob
    from precog.store.kv_codec import KVFormat
    from precog.store.kvblob import KVBlob


def _finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
    if entry.expires is not None and not _finite_number(entry.expires):
        raise ValueError("entry expires must be a finite epoch time or None")
    if not _finite_number(entry.created):
        raise ValueError("entry created must be a finite epoch time")
    try:
        Source(entry.source)
    except ValueError:
        raise ValueError(f"entry source must be one of {[s.value for s in Source]}") from None
    if not isinstance(entry.meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in entry.meta.items()
    ):
        raise ValueError("entry meta must map strings to strings")
    tokens = entry.completion_tokens
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0):
        raise ValueError("entry completion_tokens must be a non-negative integer or None")
    if entry.kv_blob_id is not None:
        check_id("kv_blob_id", entry.kv_blob_id)
    return normalised(entry.embedding, dim)


def _encoded(blob: KVBlob, kv_format: KVFormat) -> EncodedBlob:
    from precog.store.kv_blocks import encode_blob  # torch loads only where blobs are written

    return encode_blob(blob, kv_format)


@dataclass(frozen=True, slots=True)
class PreparedPut:
    """One entry of a batch, checked: the record to store (unit embedding, no hits), its exact-text key and
    the blob stored with it, encoded for writing."""

    entry: Entry
    exact: bytes
    blob: EncodedBlob | None


def prepared_puts(
    entries: list[Entry], blobs: list[KVBlob | None] | None, dim: int, kv_format: KVFormat
) -> list[PreparedPut]:
    """Check a whole batch before any of it is written; two entries of one batch may not share an id or
    a scope and normalised query (which one would win is not defined)."""
    if blobs is not None and len(blobs) != len(entries):
        raise ValueError("put_many needs one blob (or None) per entry")
    puts = [
        PreparedPut(
            dataclasses.replace(entry, embedding=validated_embedding(entry, dim), hits=0),
            exact_key(entry.scope, entry.query),
            None if blob is None else _encoded(blob, kv_format),
        )
        for entry, blob in zip(entries, blobs or [None] * len(entries), strict=True)
    ]
    if len({p.entry.id for p in puts}) < len(puts) or len({p.exact for p in puts}) < len(puts):
        raise ValueError("put_many got two entries with the same id, or the same scope and query")
    return puts
