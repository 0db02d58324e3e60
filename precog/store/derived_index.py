"""The vector index as data derived from the records: loaded at the records' epoch (caught up through the
change log when it is behind, rebuilt when it cannot be), and saved with the change log it covers trimmed."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from precog.store.change_log import catch_up, forget_until, touched_since
from precog.store.db import Database
from precog.store.errors import StoreWriteError
from precog.store.index_build import build_index
from precog.store.index_files import IndexUnusableError, load_index, save_index
from precog.store.scope_index import IndexParams
from precog.store.vector_index import VectorIndex

log = logging.getLogger(__name__)


def open_index(
    db: Database, folder: Path, epoch: int, model: str, dim: int, params: IndexParams, progress: bool
) -> VectorIndex:
    """The saved index, caught up when it is behind; else one rebuilt from the records (and saved, for
    writers)."""
    if epoch == 0:
        return VectorIndex(dim, params)
    started = time.perf_counter()
    try:
        index, saved = load_index(folder, epoch, model, dim, params)
        if saved < epoch:
            touched = touched_since(db, saved, epoch)
            if touched is None:
                raise IndexUnusableError(f"index is stale (epoch {saved}, records at {epoch})")
            catch_up(index, db, touched, dim)
        log.info(
            "vector index loaded",
            extra={
                "vectors": len(index),
                "caught_up_epochs": epoch - saved,
                "seconds": time.perf_counter() - started,
            },
        )
        return index
    except IndexUnusableError as exc:
        log.warning("rebuilding vector index", extra={"reason": str(exc)})
        index = build_index(db, dim, params, progress)
        if not db.read_only:
            persist_index(index, db, folder, epoch, model)
        return index


def persist_index(index: VectorIndex, db: Database, folder: Path, epoch: int, model: str) -> None:
    """Save the index at `epoch` and forget the change log it now covers; a failure only costs a rebuild
    (or a longer catch-up) on the next open, so it is logged, not raised."""
    try:
        save_index(index, folder, epoch, model)
    except OSError as exc:
        log.error("vector index not saved; it will be rebuilt on next open", extra={"error": str(exc)})
        return
    try:
        forget_until(db, epoch)
    except StoreWriteError as exc:
        log.error("change log not trimmed; it will be on the next save", extra={"error": str(exc)})
