"""A full consistency check of a store: every record, every vector, every blob, every index key."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from precog.store.blob_table import BLOB_OF_ENTRY, BLOB_STANDALONE, BLOCK_PREFIX, is_blob_id
from precog.store.db import Database
from precog.store.errors import StoreReadError
from precog.store.records import CorruptRecordError, decode_entry, exact_key
from precog.store.vector_index import VectorIndex

# Stored vectors are unit length and the index holds the same float32 values; allow rounding only.
_VECTOR_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. `error` means data is damaged or missing; `warning` means wasted space only."""

    kind: str
    key: str
    detail: str
    severity: str = "error"


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    vectors: int = 0
    blobs: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(self, kind: str, key: bytes | str, detail: str, severity: str = "error") -> None:
        text = key.decode(errors="replace") if isinstance(key, bytes) else key
        self.problems.append(Problem(kind, text, detail, severity))

    def summary(self) -> str:
        counts: dict[str, int] = defaultdict(int)
        for problem in self.problems:
            counts[problem.kind] += 1
        found = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no problems"
        return f"{self.entries} entries, {self.vectors} vectors, {self.blobs} blobs checked: {found}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "vectors": self.vectors,
            "blobs": self.blobs,
            "problems": [asdict(p) for p in self.problems],
        }


def verify_store(db: Database, index: VectorIndex, dim: int) -> VerifyReport:
    report = VerifyReport()
    blob_refs: set[str] = set()
    ids_by_scope: dict[str, set[str]] = defaultdict(set)
    checks: list[tuple[str, Callable[[], None]]] = [
        ("entries", lambda: _check_entries(db, index, dim, report, blob_refs, ids_by_scope)),
        ("index", lambda: _check_index(index, ids_by_scope, report)),
        ("blobs", lambda: _check_blobs(db, blob_refs, report)),
        ("exact", lambda: _check_exact_keys(db, report)),
    ]
    for part, check in checks:
        try:
            check()
        except StoreReadError as exc:
            report.add("unreadable", part, f"stopped checking {part}: {exc}")
    return report


def _check_entries(
    db: Database,
    index: VectorIndex,
    dim: int,
    report: VerifyReport,
    blob_refs: set[str],
    ids_by_scope: dict[str, set[str]],
) -> None:
    for key, data in db.cf["entries"].items():
        report.entries += 1
        try:
            entry = decode_entry(data).entry
        except CorruptRecordError as exc:
            report.add("corrupt-record", key, str(exc))
            continue
        if entry.id.encode() != key:
            report.add("id-mismatch", key, f"record holds id {entry.id!r}")
        vector = entry.embedding
        unit = (
            vector.shape == (dim,) and np.all(np.isfinite(vector)) and abs(np.linalg.norm(vector) - 1) < 1e-3
        )
        if not unit:
            report.add("bad-vector", key, f"stored embedding is not a finite unit vector of dim {dim}")
            continue
        ids_by_scope[entry.scope].add(entry.id)
        if db.cf["exact"].get(exact_key(entry.scope, entry.query)) != key:
            report.add("exact-key-missing", key, "the exact-text key of this entry does not point to it")
        if entry.kv_blob_id:
            blob_refs.add(entry.kv_blob_id)
            try:
                if db.cf["blobs"].get(entry.kv_blob_id.encode()) is None:
                    report.add("missing-blob", key, f"references blob {entry.kv_blob_id} which is absent")
            except StoreReadError as exc:
                report.add("unreadable-blob", key, f"blob {entry.kv_blob_id}: {exc}")
        scope_index = index.scope(entry.scope)
        indexed = None if scope_index is None else scope_index.vector(entry.id)
        if indexed is None:
            report.add("vector-missing", key, "entry has no vector in its scope's index")
            continue
        report.vectors += 1
        if float(np.max(np.abs(indexed - vector))) > _VECTOR_TOLERANCE:
            report.add("vector-mismatch", key, "indexed vector differs from the stored one")


def _check_index(index: VectorIndex, ids_by_scope: dict[str, set[str]], report: VerifyReport) -> None:
    for scope, scope_index in index.scopes().items():
        extra = set(scope_index.ids()) - ids_by_scope.get(scope, set())
        for entry_id in sorted(extra):
            report.add("vector-orphan", entry_id, f"index of scope {scope} holds a vector without a record")


def _check_blobs(db: Database, blob_refs: set[str], report: VerifyReport) -> None:
    # torch loads only when blobs are checked
    from precog.store.kv_blocks import Manifest, is_manifest
    from precog.store.kv_codec import check_block
    from precog.store.kvblob import CorruptBlobError, KVBlob

    for key, data in db.cf["blobs"].items():
        if key.startswith(BLOCK_PREFIX):
            try:
                check_block(data)
            except CorruptBlobError as exc:
                report.add("corrupt-kv-block", key, str(exc))
            continue
        if not is_blob_id(key):
            continue
        report.blobs += 1
        try:
            if data[:1] not in (BLOB_OF_ENTRY, BLOB_STANDALONE):
                raise CorruptBlobError("unknown owner tag")
            if is_manifest(data[1:]):
                blocks = Manifest.from_bytes(data[1:]).blocks
                if any(v is None for v in db.cf["blobs"].get_many([BLOCK_PREFIX + b for b in blocks])):
                    raise CorruptBlobError("a KV block the blob names is missing")
            else:
                KVBlob.from_bytes(data[1:])
        except CorruptBlobError as exc:
            report.add("corrupt-blob", key, str(exc))
            continue
        if data[:1] == BLOB_OF_ENTRY and key.decode() not in blob_refs:
            report.add("orphan-blob", key, "blob of an entry that no longer exists", severity="warning")


def _check_exact_keys(db: Database, report: VerifyReport) -> None:
    for value in db.cf["exact"].values():
        if db.cf["entries"].get(value) is None:
            report.add("dangling-exact-key", value, "exact-text key points to a missing entry")
