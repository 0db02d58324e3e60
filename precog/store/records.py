"""Byte layout of what the store keeps in RocksDB: entry records, index keys and counters.

An entry record is `MAGIC | crc32(body) | body`, body = `u32 header length | JSON header | float32
embedding`. The checksum lets `verify` and every read tell a damaged record from a valid one (RocksDB's
block checksums guard the disk; this one also catches bytes damaged before they were written). CRC32
rather than a cryptographic hash: it runs on every search result, and nothing here is adversarial.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from precog.store.entry import Entry, Source
from precog.store.scope import normalise_text

MAGIC = b"PE2"
_CRC = struct.Struct("<I")
_HEAD_LEN = struct.Struct("<I")
_PREFIX = len(MAGIC) + _CRC.size
_HITS = struct.Struct("<Qd")
_U64 = struct.Struct("<Q")
MAX_ID_LENGTH = 128


class CorruptRecordError(ValueError):
    """A stored entry record does not parse or its checksum does not match."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as read back, with what the store tracks about it beyond the public Entry fields."""

    entry: Entry
    owns_blob: bool
    damaged: bool = False


def check_id(kind: str, value: str) -> None:
    """Ids become RocksDB keys and index file lines: printable, short, non-empty."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise ValueError(f"{kind} must be a printable, non-empty string of at most {MAX_ID_LENGTH} chars")


def encode_entry(entry: Entry, owns_blob: bool) -> bytes:
    header = {
        "id": entry.id,
        "scope": entry.scope,
        "query": entry.query,
        "answer": entry.answer,
        "model": entry.model,
        "source": str(entry.source),
        "created": entry.created,
        "expires": entry.expires,
        "kv_blob_id": entry.kv_blob_id,
        "meta": entry.meta,
        "completion_tokens": entry.completion_tokens,
        "owns_blob": owns_blob,
    }
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    body = _HEAD_LEN.pack(len(head)) + head + np.asarray(entry.embedding, dtype=np.float32).tobytes()
    return MAGIC + _CRC.pack(zlib.crc32(body)) + body


def decode_entry(data: bytes, hits: int = 0) -> StoredEntry:
    """Parse a record; raises CorruptRecordError rather than ever returning a damaged entry."""
    if len(data) < _PREFIX + _HEAD_LEN.size or not data.startswith(MAGIC):
        raise CorruptRecordError("record does not start with the entry magic")
    body = memoryview(data)[_PREFIX:]
    if zlib.crc32(body) != _CRC.unpack_from(data, len(MAGIC))[0]:
        raise CorruptRecordError("record checksum mismatch")
    (head_len,) = _HEAD_LEN.unpack_from(body)
    start = _HEAD_LEN.size
    try:
        header = json.loads(str(body[start : start + head_len], "utf-8"))
        vector = np.frombuffer(body[start + head_len :], dtype=np.float32).copy()
        meta = dict(header["meta"])
        tokens = header.get("completion_tokens")
        if tokens is None and "completion_tokens" in meta:  # stores written before it was a field
            tokens = int(meta.pop("completion_tokens"))
        entry = Entry(
            id=header["id"],
            scope=header["scope"],
            query=header["query"],
            answer=header["answer"],
            embedding=vector,
            model=header["model"],
            source=Source(header["source"]),
            created=float(header["created"]),
            expires=header["expires"],
            hits=hits,
            kv_blob_id=header["kv_blob_id"],
            meta=meta,
            completion_tokens=tokens,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"record does not parse: {exc}") from exc
    return StoredEntry(entry=entry, owns_blob=bool(header.get("owns_blob", False)))


def exact_key(scope: str, query: str) -> bytes:
    """Key of the per-scope exact-text index: scope, then a hash of the normalised query."""
    text_hash = hashlib.blake2b(normalise_text(query).encode(), digest_size=16).digest()
    return scope_prefix(scope) + text_hash


def scope_prefix(scope: str) -> bytes:
    return scope.encode() + b"\x00"


def encode_hits(count: int, last_hit: float) -> bytes:
    return _HITS.pack(count, last_hit)


def decode_hits(data: bytes | None) -> tuple[int, float]:
    if data is None or len(data) != _HITS.size:
        return 0, 0.0
    count, last = _HITS.unpack(data)
    return int(count), float(last)


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(data: bytes) -> int:
    return int(_U64.unpack(data)[0])
