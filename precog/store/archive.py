"""Export of a store to a directory or .tar.gz (a RocksDB checkpoint plus the index files), and import."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from precog.store.db import DB_DIR, INDEX_DIR, Database, is_store
from precog.store.errors import NotAStoreError, StoreError

if TYPE_CHECKING:
    from precog.store.verify import VerifyReport

_TOP = "precog-store"


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz"))


def _require_empty(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise StoreError(f"{dest} already exists and is not an empty directory")


def export_store(db: Database, index_dir: Path, dest: Path) -> Path:
    """Checkpoint the database and copy the saved index; the caller holds the write lock."""
    _require_empty(dest)
    if not _is_tarball(dest):
        dest.mkdir(parents=True, exist_ok=True)
        try:
            db.checkpoint(dest / DB_DIR)
            if index_dir.exists():
                shutil.copytree(index_dir, dest / INDEX_DIR)
        except Exception as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise StoreError(f"export to {dest} failed: {exc}") from exc
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        staged = export_store(db, index_dir, Path(tmp) / _TOP)
        partial = dest.with_name(dest.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(staged, arcname=_TOP)
        partial.replace(dest)
    return dest


def import_store(src: Path, dest: Path, verify: Callable[[Path], VerifyReport]) -> VerifyReport:
    """Copy or unpack an export into `dest` (which must not hold anything yet) and `verify` it there;
    a copy that fails is removed."""
    _unpack(src, dest)
    try:
        report = verify(dest)
        if not report.ok:
            raise StoreError(f"imported store failed verification: {report.summary()}")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return report


def _unpack(src: Path, dest: Path) -> None:
    _require_empty(dest)
    if not src.exists():
        raise StoreError(f"{src} does not exist")
    if src.is_dir():
        if not is_store(src):
            raise NotAStoreError(f"{src} is not an exported precog store")
        shutil.copytree(src, dest, dirs_exist_ok=True)
        return
    if not _is_tarball(src):
        raise StoreError(f"{src} is neither a store directory nor a .tar.gz export")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".import-") as tmp:
        try:
            with tarfile.open(src, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise StoreError(f"{src} is not a readable .tar.gz export: {exc}") from exc
        unpacked = Path(tmp) / _TOP
        if not is_store(unpacked):
            raise NotAStoreError(f"{src} does not contain an exported precog store")
        dest.mkdir(parents=True, exist_ok=True)
        for part in unpacked.iterdir():
            shutil.move(str(part), dest / part.name)
