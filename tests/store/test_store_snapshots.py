"""Published snapshots: `current` moves atomically to each new export, readers open it read-only while
the writer goes on, old ones are pruned (never the current one), and `precog store publish` does it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from precog.store import Entry, Store, current_snapshot, publish_snapshot
from precog.store.cli import app


def _queries(path: Path) -> set[str]:
    with Store.open(path, read_only=True, create=False, progress=False) as snapshot:
        return {e.query for e in snapshot.entries()}


def test_publish_swaps_current_and_prunes_old_snapshots(
    store: Store, tmp_path: Path, make_entry: Callable[..., Entry]
) -> None:
    root = tmp_path / "snapshots"
    assert current_snapshot(root) is None
    store.put(make_entry(query="first"))
    first = publish_snapshot(store, root, {"invalidations_applied": "5-0"}, keep=2)
    opened_first = Store.open(first.path, read_only=True, create=False, progress=False)
    store.put(make_entry(query="second"))
    second = publish_snapshot(store, root, keep=2)

    info = current_snapshot(root)
    assert info is not None and info.name == second.name and os.readlink(root / "current") == second.name
    assert _queries(info.path) == {"first", "second"}
    assert {e.query for e in opened_first.entries()} == {"first"}  # a reader keeps its snapshot
    opened_first.close()
    assert first.meta == {"invalidations_applied": "5-0"}

    third = publish_snapshot(store, root, keep=2)
    names = sorted(p.name for p in root.iterdir() if not p.is_symlink())
    assert names == sorted([second.name, third.name]) and not first.path.exists()
    assert len(_queries(third.path)) == len(store) == 2


def test_publish_command(store_path: Path, make_entry: Callable[..., Entry], tmp_path: Path) -> None:
    with Store.open(store_path, progress=False) as store:
        store.put(make_entry(query="from the cli"))
    root = tmp_path / "snapshots"
    result = CliRunner().invoke(app, ["publish", str(root), "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    info = current_snapshot(root)
    assert info is not None and _queries(info.path) == {"from the cli"}
