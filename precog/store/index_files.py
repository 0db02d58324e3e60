"""Persistence of the vector index beside the database, with a manifest saying which records it reflects.

The manifest names the store's vector epoch (a counter bumped inside every write batch that adds or
removes a vector) and a CRC32 per scope file. On open, an index whose epoch, model, dimension or
checksums do not match is unusable and gets rebuilt from the records.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

from precog.store.scope_index import IndexParams, ScopeIndex
from precog.store.vector_index import VectorIndex

MANIFEST = "manifest.json"
FORMAT = 1


class IndexUnusableError(Exception):
    """The saved index is missing, stale or corrupt; the message says which."""


def _scope_file(scope: str) -> str:
    return hashlib.blake2b(scope.encode(), digest_size=16).hexdigest() + ".idx"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise IndexUnusableError("no saved index") from exc
    except (OSError, ValueError) as exc:
        raise IndexUnusableError(f"index manifest unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexUnusableError("index manifest has an unknown format")
    return manifest


def save_index(index: VectorIndex, directory: Path, epoch: int, model: str) -> None:
    """Write changed scope files, then the manifest; a crash in between leaves a detectably stale index."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        previous: dict[str, dict[str, Any]] = read_manifest(directory)["scopes"]
    except IndexUnusableError:
        previous = {}
    dirty = index.take_dirty()
    try:
        _write_files(index, directory, epoch, model, previous, dirty)
    except BaseException:
        index.mark_dirty(dirty)
        raise


def _write_files(
    index: VectorIndex,
    directory: Path,
    epoch: int,
    model: str,
    previous: dict[str, dict[str, Any]],
    dirty: set[str],
) -> None:
    scopes: dict[str, dict[str, Any]] = {}
    for scope, scope_index in index.scopes().items():
        if not len(scope_index):
            continue
        name = _scope_file(scope)
        if scope in previous and scope not in dirty and (directory / name).exists():
            scopes[scope] = previous[scope]
            continue
        data = scope_index.to_bytes()
        _write_atomically(directory / name, data)
        scopes[scope] = {
            "file": name,
            "crc32": zlib.crc32(data),
            "bytes": len(data),
            "count": len(scope_index),
        }
    manifest = {"format": FORMAT, "epoch": epoch, "model": model, "dim": index.dim, "scopes": scopes}
    _write_atomically(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    keep = {MANIFEST} | {info["file"] for info in scopes.values()}
    for path in directory.iterdir():
        if path.name not in keep:
            path.unlink(missing_ok=True)


def load_index(
    directory: Path, epoch: int, model: str, dim: int, params: IndexParams
) -> tuple[VectorIndex, int]:
    """The saved index and the epoch it reflects (at most `epoch`); IndexUnusableError otherwise."""
    manifest = read_manifest(directory)
    saved = manifest.get("epoch")
    if not isinstance(saved, int) or saved > epoch:
        raise IndexUnusableError(f"index was saved at epoch {saved}, after the records' epoch {epoch}")
    if manifest.get("model") != model or manifest.get("dim") != dim:
        raise IndexUnusableError("index was built for another embedding model or dimension")
    index = VectorIndex(dim, params)
    for scope, info in manifest["scopes"].items():
        try:
            data = (directory / info["file"]).read_bytes()
        except OSError as exc:
            raise IndexUnusableError(f"index file for a scope is missing: {exc}") from exc
        if zlib.crc32(data) != info["crc32"]:
            raise IndexUnusableError(f"index file {info['file']} is corrupt (checksum mismatch)")
        try:
            scope_index = ScopeIndex.from_bytes(data, dim, params)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise IndexUnusableError(f"index file {info['file']} does not parse: {exc}") from exc
        if len(scope_index) != info["count"]:
            raise IndexUnusableError(f"index file {info['file']} holds the wrong number of vectors")
        index.put_loaded(scope, scope_index)
    index.take_dirty()
    return index, saved


def index_disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*") if p.is_file()) if directory.exists() else 0
