"""Run a whole job with the chosen engine, then report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from precog.precompute.job import Job
from precog.precompute.progress import StageBars
from precog.precompute.report import build_report, write_report
from precog.precompute.settings import PrecomputeSettings

Engine = Literal["local", "ray"]
log = logging.getLogger(__name__)


def run_precompute(
    settings: PrecomputeSettings,
    corpus: Path,
    store_path: Path,
    engine: Engine = "local",
    query_log: Path | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Build or extend the store at `store_path` from `corpus`; returns the report and where it was written.
    Raises PrecomputeError, before anything is written, when an input is unusable."""
    job = Job.open(settings, corpus, store_path, query_log)
    bars = StageBars(job.replay, len(job.chunks), kv=settings.capture_kv, enabled=progress)
    job.listeners.on_query, job.listeners.on_record = bars.on_query, bars.on_record
    try:
        if engine == "ray":
            from precog.precompute.ray_engine import run_ray

            run_ray(job)
        else:
            from precog.precompute.local import run_local

            run_local(job)
        if not job.stopped and job.garbage and (job.pending_chunks() or job.pending_queries()):
            job.stop(f"{job.garbage} unusable upstream answers left work unfinished", failed=True)
    finally:
        bars.close()
        report = build_report(job, engine)
        path = job.worklog.folder / "report.json"
        write_report(report, path)
        job.close()
    log.info("precompute finished", extra={k: v for k, v in report.items() if k != "skipped_files"})
    return report, path
