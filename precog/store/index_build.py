"""Building the vector index from the records: the recovery path when the saved index is unusable."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from precog.store.db import Database
from precog.store.records import CorruptRecordError, decode_entry
from precog.store.scope_index import IndexParams, ScopeIndex
from precog.store.vector_index import VectorIndex
from precog.store.vectors import normalised

log = logging.getLogger(__name__)


def build_index(db: Database, dim: int, params: IndexParams, progress: bool) -> VectorIndex:
    """One pass over the entry records (with a progress bar), then one index per scope."""
    grouped: dict[str, tuple[list[str], list[np.ndarray]]] = defaultdict(lambda: ([], []))
    total = db.cf["entries"].estimated_count() or None
    with tqdm(total=total, desc="rebuilding vector index", unit="entry", disable=not progress) as bar:
        for key, data in db.cf["entries"].items():
            bar.update()
            try:
                entry = decode_entry(data).entry
                vector = normalised(entry.embedding, dim)
            except (CorruptRecordError, ValueError):
                log.error("entry left out of the index", extra={"entry_id": key.decode(errors="replace")})
                continue
            ids, vectors = grouped[entry.scope]
            ids.append(entry.id)
            vectors.append(vector)
    index = VectorIndex(dim, params)
    scopes = tqdm(
        grouped.items(), desc="indexing scopes", unit="scope", disable=not progress or len(grouped) < 2
    )
    for scope, (ids, vectors) in scopes:
        index.put_loaded(scope, ScopeIndex.build(dim, params, ids, np.stack(vectors)))
    index.mark_dirty(set(grouped))
    return index
