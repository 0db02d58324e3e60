"""Published snapshots: read-only copies of a store that any number of replicas open, swapped by one link.

Layout of a snapshot root: `<root>/<name>/` (an export: `db/`, `index/` and `snapshot.json`) and
`<root>/current`, a relative symlink to the newest one. Publishing exports first, writes the metadata,
then renames a new link over `current` (rename(2) is atomic), so a reader resolves either the old
snapshot or the new one, never a half-written one. Old snapshots are pruned, keeping a few, because a
replica may still be reading one for the second it takes to notice the new link.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from precog.store.errors import StoreError

if TYPE_CHECKING:
    from precog.store.store import Store

CURRENT = "current"
META_FILE = "snapshot.json"


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One published snapshot; `meta` carries what the publisher wants readers to know (stream ids)."""

    name: str
    path: Path
    created: float
    meta: dict[str, str] = field(default_factory=dict)


def _new_name() -> str:
    """Sortable by time, unique even for two publishes in the same nanosecond tick."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"


def publish_snapshot(
    store: Store, root: str | Path, meta: dict[str, str] | None = None, keep: int = 3
) -> SnapshotInfo:
    """Export `store` under `root`, point `current` at it, and prune all but the newest `keep`."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = _new_name()
    staged = root / f".{name}.partial"
    store.export(staged)
    created = time.time()
    info = {"name": name, "created": created, "meta": dict(meta or {})}
    (staged / META_FILE).write_text(json.dumps(info))
    target = root / name
    staged.rename(target)
    link = root / f".{CURRENT}-{uuid.uuid4().hex}"
    os.symlink(name, link)
    os.replace(link, root / CURRENT)
    prune_snapshots(root, keep)
    return SnapshotInfo(name, target, created, dict(meta or {}))


def read_snapshot(path: str | Path) -> SnapshotInfo:
    """The metadata of the snapshot directory at `path`."""
    path = Path(path)
    try:
        info = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is not a published snapshot: {exc}") from exc
    return SnapshotInfo(str(info["name"]), path, float(info["created"]), dict(info.get("meta") or {}))


def current_snapshot(root: str | Path) -> SnapshotInfo | None:
    """The snapshot `current` points at, or None when nothing has been published yet."""
    root = Path(root)
    try:
        name = os.readlink(root / CURRENT)
    except FileNotFoundError:
        return None
    return read_snapshot(root / name)


def prune_snapshots(root: str | Path, keep: int) -> list[str]:
    """Delete all but the newest `keep` snapshots (never the current one, never a partial export)."""
    root = Path(root)
    live = current_snapshot(root)
    names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    doomed = [name for name in names[:-keep] if live is None or name != live.name]
    for name in doomed:
        shutil.rmtree(root / name, ignore_errors=True)
    return doomed
