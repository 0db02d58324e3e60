"""`precog store …`: inspect and maintain a store from the shell.

Heavy modules (FAISS, RocksDB, torch) load inside each command, so `precog --help` stays fast.
Reading commands open the store read-only, so they also work while a gateway or precompute job writes.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from precog.store.entry import Entry
    from precog.store.store import Store

app = typer.Typer(no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

StorePath = Annotated[
    Path,
    typer.Option("--store", envvar="PRECOG_STORE_PATH", help="Store directory.", show_default=True),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
_DEFAULT_STORE = Path("var/store")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the store's errors into one red line and exit status 1 instead of a traceback."""
    from precog.store.errors import StoreError

    try:
        yield
    except (StoreError, ValueError, KeyError, OSError) as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@contextmanager
def _opened(path: Path, *, write: bool = False) -> Iterator[Store]:
    from precog.store.store import Store

    with _clear_errors():
        model, dim = Store.identity(path)
        with Store.open(path, embedding_model=model, dim=dim, read_only=not write, create=False) as store:
            yield store


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _when(epoch: float | None) -> str:
    return "never" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry_dict(entry: Entry, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": entry.id,
        "scope": entry.scope,
        "query": entry.query,
        "answer": entry.answer if full else entry.answer[:200],
        "model": entry.model,
        "source": str(entry.source),
        "created": entry.created,
        "expires": entry.expires,
        "expired": entry.expired(),
        "hits": entry.hits,
        "kv_blob_id": entry.kv_blob_id,
        "meta": entry.meta,
        "completion_tokens": entry.completion_tokens,
    }
    if full:
        data["embedding_head"] = [round(float(x), 4) for x in entry.embedding[:8]]
    return data


def parse_age(text: str) -> float:
    """'90', '90s', '15m', '2h', '7d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not an age like 90s, 15m, 2h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@app.command()
def stats(store: StorePath = _DEFAULT_STORE, as_json: AsJson = False) -> None:
    """Entry counts (live, expired, per scope), bytes by part, and the shape of each scope's index."""
    with _opened(store) as opened, _clear_errors():
        data = opened.stats()
    if as_json:
        _print_json(data)
        return
    summary = Table(title=f"store {data['path']}", show_header=False)
    summary.add_row("embedding model", f"{data['embedding_model']} (dim {data['dim']})")
    summary.add_row("entries", f"{data['entries']:,} ({data['expired']:,} expired)")
    summary.add_row("KV blobs", f"{data['blobs']:,} ({data['kv_blocks']:,} blocks of KV, each stored once)")
    for part, size in data["bytes"].items():
        summary.add_row(f"bytes: {part}", f"{size:,}")
    console.print(summary)
    scopes = Table(title="scopes")
    for column in ("scope", "entries", "index", "vectors", "tombstones"):
        scopes.add_column(column, justify="left" if column in ("scope", "index") else "right")
    for scope, count in data["scopes"].items():
        index = data["index"].get(scope, {})
        scopes.add_row(
            scope,
            f"{count:,}",
            index.get("kind", "-"),
            str(index.get("vectors", 0)),
            str(index.get("tombstones", 0)),
        )
    console.print(scopes)
    sources = Table(title="sources (the corpus file each entry was written from)")
    sources.add_column("source")
    sources.add_column("entries", justify="right")
    for source, count in data["sources"].items():
        sources.add_row(source, f"{count:,}")
    console.print(sources)


@app.command("list")
def list_entries(
    store: StorePath = _DEFAULT_STORE,
    scope: Annotated[str | None, typer.Option(help="Only entries of this scope key.")] = None,
    text: Annotated[
        str | None, typer.Option(help="Only entries whose query or answer contains this.")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many entries.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many matching entries first.")] = 0,
    as_json: AsJson = False,
) -> None:
    """A page of entries, in key order."""
    with _opened(store) as opened, _clear_errors():
        page = opened.entries(scope=scope, limit=limit, offset=offset, text=text)
    if as_json:
        _print_json([_entry_dict(entry) for entry in page])
        return
    table = Table(title=f"{len(page)} entries (offset {offset})")
    for column in ("id", "scope", "query", "hits", "expires", "blob"):
        table.add_column(column, overflow="fold")
    for entry in page:
        table.add_row(
            entry.id,
            entry.scope[:12],
            entry.query[:80],
            str(entry.hits),
            _when(entry.expires),
            "yes" if entry.kv_blob_id else "",
        )
    console.print(table)


@app.command()
def show(
    entry_id: Annotated[str, typer.Argument(help="Id of the entry.")],
    store: StorePath = _DEFAULT_STORE,
    as_json: AsJson = False,
) -> None:
    """One entry in full, with a summary of its KV blob."""
    with _opened(store) as opened, _clear_errors():
        entry = opened.get(entry_id)
        if entry is None:
            errors.print(f"[red]error:[/red] no entry {entry_id!r} in {store}")
            raise typer.Exit(1)
        data = _entry_dict(entry, full=True)
        if entry.kv_blob_id:
            from precog.store.kvblob import CorruptBlobError

            try:
                blob = opened.get_blob(entry.kv_blob_id)
                data["kv_blob"] = {
                    "layers": blob.num_layers,
                    "tokens": len(blob.token_ids),
                    "bytes": blob.nbytes,
                    "model": blob.model,
                    "rope": blob.rope,
                }
            except (CorruptBlobError, KeyError) as exc:
                data["kv_blob"] = {"error": str(exc)}
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"entry {entry_id}", show_header=False)
    for key, value in data.items():
        shown = _when(value) if key in ("created", "expires") else value
        table.add_row(key, json.dumps(shown, default=str) if isinstance(shown, dict | list) else str(shown))
    console.print(table)


@app.command()
def verify(store: StorePath = _DEFAULT_STORE, as_json: AsJson = False) -> None:
    """Check every record, vector and KV blob; exit status 1 when anything is damaged or missing."""
    with _opened(store) as opened, _clear_errors():
        report = opened.verify()
    if as_json:
        _print_json(report.to_dict())
    else:
        console.print(report.summary())
        if report.problems:
            table = Table(title="problems")
            for column in ("severity", "kind", "key", "detail"):
                table.add_column(column, overflow="fold")
            for problem in report.problems:
                table.add_row(problem.severity, problem.kind, problem.key, problem.detail)
            console.print(table)
    if not report.ok:
        raise typer.Exit(1)


@app.command("rebuild-index")
def rebuild_index(store: StorePath = _DEFAULT_STORE) -> None:
    """Rebuild every scope's vector index from the records and save it (needs the writer's lock)."""
    with _opened(store, write=True) as opened, _clear_errors():
        opened.rebuild_index()
        console.print(f"rebuilt the index of {len(opened):,} vectors")


@app.command()
def export(
    dest: Annotated[Path, typer.Argument(help="New directory, or a file name ending in .tar.gz.")],
    store: StorePath = _DEFAULT_STORE,
) -> None:
    """Write a consistent snapshot of the store (works while another process writes to it)."""
    with _opened(store) as opened, _clear_errors():
        written = opened.export(dest)
    console.print(f"exported {store} to {written}")


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="An exported store: directory or .tar.gz.")],
    dest: Annotated[Path, typer.Argument(help="Where to put it (must not exist or be empty).")],
) -> None:
    """Unpack an exported store and verify it in its new place."""
    from precog.store.store import Store

    with _clear_errors():
        report = Store.import_(src, dest)
    console.print(f"imported {src} into {dest}: {report.summary()}")


@app.command()
def invalidate(
    store: StorePath = _DEFAULT_STORE,
    entry_id: Annotated[list[str] | None, typer.Option("--id", help="Entry id (repeatable).")] = None,
    scope: Annotated[str | None, typer.Option(help="Every entry of this scope key.")] = None,
    substring: Annotated[str | None, typer.Option(help="Entries whose query contains this text.")] = None,
    older_than: Annotated[
        str | None, typer.Option(help="Entries older than this age: 90s, 15m, 2h, 7d.")
    ] = None,
) -> None:
    """Delete the entries that match every given filter (at least one is required)."""
    age = parse_age(older_than) if older_than is not None else None
    with _opened(store, write=True) as opened, _clear_errors():
        removed = opened.invalidate(ids=entry_id or None, scope=scope, substring=substring, older_than=age)
    console.print(f"invalidated {removed:,} entries")


@app.command()
def publish(
    root: Annotated[Path, typer.Argument(help="Snapshot root that replicas follow (its `current` link).")],
    store: StorePath = _DEFAULT_STORE,
    keep: Annotated[int, typer.Option(min=1, help="Snapshots kept under the root.")] = 3,
) -> None:
    """Publish a snapshot of the store for read-only replicas: export, then swap `current` atomically."""
    from precog.store.snapshots import publish_snapshot

    with _opened(store) as opened, _clear_errors():
        info = publish_snapshot(opened, root, keep=keep)
    console.print(f"published {info.path} (now {root / 'current'})")
