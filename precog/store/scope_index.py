"""The FAISS index of one scope: exact (flat) while small, HNSW once it outgrows `hnsw_threshold`.

FAISS labels are positions in `ids`. A deleted entry becomes a tombstone (its position is excluded
from searches with an IDSelector) until tombstones outnumber live vectors, when the index is rebuilt
from its own live vectors. Searches share a read lock; mutations take the write lock.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from precog.store.rwlock import RWLock

_MAGIC = b"PSI1"


@dataclass(frozen=True, slots=True)
class IndexParams:
    """Where a scope switches from exact to approximate search, and how the HNSW graph is built.

    From bench/store_bench.py on this shared 2-core machine: an exact flat scan of 384-d vectors costs
    ~0.1 ms at 5K, ~0.25 ms at 10K, ~1 ms at 20K and ~5 ms at 50K per query, so a scope switches to
    HNSW past 20K. HNSW M=32, efConstruction=80, efSearch=96 at 100K: recall@10 0.953 against exact
    search, store search p50 1.5 ms vs 6.6 ms exact (efSearch 128: recall 0.971, ~25% slower).
    M=16 stayed under 0.9 recall and IVF with 4*sqrt(n) lists under 0.6 at nprobe 32 on the same data.
    """

    hnsw_threshold: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 96
    # Tombstones are compacted away once they exceed this many and outnumber live vectors.
    min_tombstones_to_compact: int = 1_000
    # FAISS OpenMP threads for this process. One: single-query searches do not parallelise, the
    # gateway already searches from many threads, and OpenMP spin-waiting on a shared 2-core machine
    # made batch builds 10x slower in the benchmark than one thread.
    faiss_threads: int = 1


class ScopeIndex:
    """Vectors of one scope, searchable by inner product (cosine on the store's unit vectors).

    Searches may run from any number of threads; mutations (add, remove) must come one at a time.
    """

    def __init__(self, dim: int, params: IndexParams) -> None:
        self.dim = dim
        self.params = params
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._dead: set[int] = set()
        self._selector: faiss.IDSelector | None = None
        self._selector_parts: tuple[object, ...] = ()
        self._lock = RWLock()

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._positions

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size: vectors, graph links (HNSW) and the id table."""
        vectors = self._index.ntotal * self.dim * 4
        links = self._index.ntotal * self.params.hnsw_m * 2 * 4 * 1.1 if self.kind == "hnsw" else 0
        return int(vectors + links + sum(len(i) + 90 for i in self._ids))

    def ids(self) -> list[str]:
        with self._lock.read():
            return list(self._positions)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add unit vectors [n, dim]; an id already present is replaced."""
        if not ids:
            return
        with self._lock.write():
            self._tombstone([i for i in ids if i in self._positions])
            start = len(self._ids)
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self._ids.extend(ids)
            self._positions.update((entry_id, start + n) for n, entry_id in enumerate(ids))
        self._reshape_if_needed()

    def remove(self, ids: list[str]) -> int:
        """Tombstone `ids`; returns how many were present."""
        with self._lock.write():
            removed = self._tombstone([i for i in ids if i in self._positions])
        self._reshape_if_needed()
        return removed

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k live vectors with the highest inner product with `vector` (unit, [dim]), best first."""
        with self._lock.read():
            k = min(k, len(self._positions))
            if k <= 0:
                return []
            params: Any = faiss.SearchParameters()
            if self.kind == "hnsw":
                # faiss' type stubs miss the HNSW parameters class; it exists at runtime.
                params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                params.efSearch = max(self.params.ef_search, k)
            if self._selector is not None:
                params.sel = self._selector
            scores, labels = self._index.search(vector.reshape(1, -1), k, params=params)
            return [
                (self._ids[label], float(score))
                for label, score in zip(labels[0], scores[0], strict=True)
                if label >= 0
            ]

    def vector(self, entry_id: str) -> np.ndarray | None:
        with self._lock.read():
            position = self._positions.get(entry_id)
            return None if position is None else np.asarray(self._index.reconstruct(position))

    def live_vectors(self) -> tuple[list[str], np.ndarray]:
        with self._lock.read():
            return self._live()

    def to_bytes(self) -> bytes:
        """Serialise index, id table and tombstones in one blob (checksummed by the manifest)."""
        with self._lock.read():
            header = json.dumps({"ids": self._ids, "dead": sorted(self._dead)}).encode()
            body = faiss.serialize_index(self._index).tobytes()
        return _MAGIC + struct.pack("<Q", len(header)) + header + body

    @classmethod
    def from_bytes(cls, data: bytes, dim: int, params: IndexParams) -> ScopeIndex:
        """Inverse of to_bytes; ValueError when the bytes are not a consistent scope index."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a scope index file")
        (head_len,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        header = json.loads(data[start : start + head_len])
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=start + head_len))
        ids, dead = list(header["ids"]), set(header["dead"])
        if index.d != dim or index.ntotal != len(ids) or any(not 0 <= p < len(ids) for p in dead):
            raise ValueError("scope index file is inconsistent with its id table or dimension")
        scope_index = cls(dim, params)
        scope_index._index = index
        scope_index._ids = ids
        scope_index._positions = {entry_id: n for n, entry_id in enumerate(ids) if n not in dead}
        scope_index._dead = dead
        scope_index._refresh_selector()
        return scope_index

    def _tombstone(self, ids: list[str]) -> int:
        for entry_id in ids:
            self._dead.add(self._positions.pop(entry_id))
        if ids:
            self._refresh_selector()
        return len(ids)

    def _refresh_selector(self) -> None:
        if not self._dead:
            self._selector, self._selector_parts = None, ()
            return
        dead = np.fromiter(self._dead, dtype=np.int64, count=len(self._dead))
        batch = faiss.IDSelectorBatch(dead)
        # SWIG does not keep the inner selector alive; hold every part for as long as the outer one.
        self._selector_parts = (dead, batch)
        self._selector = faiss.IDSelectorNot(batch)

    def _live(self) -> tuple[list[str], np.ndarray]:
        if not self._positions:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        all_vectors = self._index.reconstruct_n(0, self._index.ntotal)
        ids = list(self._positions)
        return ids, all_vectors[[self._positions[i] for i in ids]]

    def _reshape_if_needed(self) -> None:
        """Switch flat -> HNSW past the threshold; drop tombstones once they dominate.

        The new index is built under the read lock, so searches go on meanwhile (an HNSW build takes
        seconds); this is safe because the caller serialises mutations (the Store's write lock).
        """
        with self._lock.read():
            grow = self.kind == "flat" and len(self._positions) > self.params.hnsw_threshold
            dead = len(self._dead)
            compact = dead >= self.params.min_tombstones_to_compact and dead > len(self._positions)
            if not (grow or compact):
                return
            ids, vectors = self._live()
            index = self._new_index(len(ids))
            if ids:
                index.add(vectors)
        with self._lock.write():
            self._index = index
            self._ids = ids
            self._positions = {entry_id: n for n, entry_id in enumerate(ids)}
            self._dead = set()
            self._refresh_selector()

    def _new_index(self, size: int) -> faiss.Index:
        if size <= self.params.hnsw_threshold:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.params.ef_construction
        index.hnsw.efSearch = self.params.ef_search
        return index

    @classmethod
    def build(cls, dim: int, params: IndexParams, ids: list[str], vectors: np.ndarray) -> ScopeIndex:
        """A fresh index over `ids`/`vectors` (unit rows), of the kind its size calls for."""
        scope_index = cls(dim, params)
        scope_index._index = scope_index._new_index(len(ids))
        if ids:
            scope_index._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        scope_index._ids = list(ids)
        scope_index._positions = {entry_id: n for n, entry_id in enumerate(ids)}
        return scope_index
