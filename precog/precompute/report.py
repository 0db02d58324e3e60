"""The closing report: what the whole job has produced so far (replayed from its log), and what this
invocation spent. Printed as a table and written as JSON beside the work log."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from precog.precompute.job import Job


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def build_report(job: Job, engine: str) -> dict[str, Any]:
    replay = job.replay
    wall = time.monotonic() - job.started
    generated = replay.parsed
    written = len(replay.written - replay.dropped)
    kv_bytes = sum(r.bytes for r in replay.kv.values())
    store_bytes = folder_bytes(job.store_path)
    stats = job.store.stats()
    stored = stats["bytes"]
    entries, blobs = stats["entries"] or 1, stats["blobs"] or 1
    without_kv = (stored["records"] + stored["vectors"]) / entries
    return {
        "engine": engine,
        "scope": job.scope,
        "store": str(job.store_path),
        "complete": not job.pending_chunks() and not job.pending_queries() and not job.stopped,
        "stopped_reason": job.stop_reason,
        "failed": job.failed,
        "chunks": len(job.chunks),
        "chunks_done": len(replay.chunks_done & set(job.chunks)),
        "queries_generated": generated,
        "duplicates_dropped": replay.duplicates,
        "duplicate_rate": round(replay.duplicates / generated, 4) if generated else 0.0,
        "queries_accepted": len(replay.queries),
        "queries_accepted_by_writer": dict(
            Counter(q.writer or job.model for q in replay.queries.values() if q.origin == "generated")
        ),
        "answers": len(replay.answers),
        "answers_trimmed_to_whole_sentences": sum(
            1 for a in replay.answers.values() if a.trimmed and not a.truncated
        ),
        "answers_truncated_dropped": sum(1 for a in replay.answers.values() if a.truncated),
        "answers_ungrounded_dropped": sum(1 for a in replay.answers.values() if a.ungrounded),
        "answers_quoted_from_chunk": sum(1 for a in replay.answers.values() if a.quoted),
        "entries_retired_this_run": job.retired,
        "kv_blobs": len(replay.kv),
        "kv_bytes_captured": kv_bytes,
        "kv_format": job.settings.kv_format,
        "entries_with_kv": stats["blobs"],
        "kv_not_kept_prefill_faster": len(replay.kv_skipped),
        "kv_bytes_stored": stored["blobs"],
        "kv_blocks_stored": stats["kv_blocks"],
        "bytes_per_entry_without_kv": round(without_kv),
        "bytes_per_entry_with_kv": round(without_kv + stored["blobs"] / blobs) if stats["blobs"] else None,
        "entries_written": written,
        "store_bytes": store_bytes,
        "bytes_per_entry": round(store_bytes / written) if written else 0,
        "tokens_spent": replay.tokens,
        "tokens_spent_this_run": job.budget.spent,
        "unusable_upstream_answers_this_run": job.garbage,
        "skipped_files": job.skipped_files,
        "wall_seconds_this_run": round(wall, 2),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(path)


def print_report(report: dict[str, Any], path: Path, console: Console | None = None) -> None:
    table = Table(title="precompute report", show_header=False)
    for key, value in report.items():
        if key != "skipped_files":
            table.add_row(key, str(value))
    table.add_row("skipped_files", str(len(report["skipped_files"])))
    table.add_row("report", str(path))
    (console or Console(stderr=True)).print(table)
