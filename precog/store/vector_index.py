"""All scopes' FAISS indexes of one store, and which of them changed since they were last saved."""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np

from precog.store.entry import Entry
from precog.store.scope_index import IndexParams, ScopeIndex


class VectorIndex:
    """Maps scope -> ScopeIndex. A search only ever looks inside the one scope it is given."""

    def __init__(self, dim: int, params: IndexParams) -> None:
        self.dim = dim
        self.params = params
        self._scopes: dict[str, ScopeIndex] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()

    def scope(self, scope: str) -> ScopeIndex | None:
        return self._scopes.get(scope)

    def scope_of(self, entry_id: str) -> str | None:
        """The scope whose index holds `entry_id` (a scan over scopes: for repairs, not for serving)."""
        return next((scope for scope, index in self.scopes().items() if entry_id in index), None)

    def scopes(self) -> dict[str, ScopeIndex]:
        with self._lock:
            return dict(self._scopes)

    def add(self, scope: str, ids: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            scope_index = self._scopes.setdefault(scope, ScopeIndex(self.dim, self.params))
            self._dirty.add(scope)
        scope_index.add(ids, vectors)

    def remove(self, scope: str, ids: list[str]) -> None:
        scope_index = self._scopes.get(scope)
        if scope_index is None:
            return
        scope_index.remove(ids)
        with self._lock:
            self._dirty.add(scope)

    def add_entries(self, entries: list[Entry]) -> None:
        """Add the entries' vectors, one batch per scope."""
        by_scope: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_scope[entry.scope].append(entry)
        for scope, group in by_scope.items():
            self.add(scope, [e.id for e in group], np.stack([e.embedding for e in group]))

    def remove_entries(self, entries: list[Entry]) -> None:
        by_scope: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_scope[entry.scope].append(entry.id)
        for scope, ids in by_scope.items():
            self.remove(scope, ids)

    def search(self, scope: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        scope_index = self._scopes.get(scope)
        return [] if scope_index is None else scope_index.search(vector, k)

    def counts(self) -> dict[str, int]:
        return {scope: len(index) for scope, index in self.scopes().items()}

    def __len__(self) -> int:
        return sum(self.counts().values())

    @property
    def memory_bytes(self) -> int:
        return sum(index.memory_bytes for index in self.scopes().values())

    def take_dirty(self) -> set[str]:
        """Scopes changed since the last call (the caller is about to save them)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            return dirty

    def mark_dirty(self, scopes: set[str]) -> None:
        """Give back scopes from take_dirty whose save failed."""
        with self._lock:
            self._dirty |= scopes

    def drop_tombstones(self) -> None:
        """Rebuild each scope index holding removed vectors from its live ones (smaller, faster)."""
        for scope, scope_index in self.scopes().items():
            if scope_index.tombstones:
                ids, vectors = scope_index.live_vectors()
                self.put_loaded(scope, ScopeIndex.build(self.dim, self.params, ids, vectors))
                self.mark_dirty({scope})

    def put_loaded(self, scope: str, scope_index: ScopeIndex) -> None:
        with self._lock:
            self._scopes[scope] = scope_index
