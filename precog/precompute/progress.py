"""One progress bar per stage (tqdm: counts, rates, ETA), moved by the work log's records as they land."""

from __future__ import annotations

import threading

from tqdm import tqdm

from precog.precompute.records import Record
from precog.precompute.worklog import Replay


class StageBars:
    def __init__(self, replay: Replay, chunks: int, kv: bool, enabled: bool = True) -> None:
        queries = len(replay.queries)
        self._lock = threading.Lock()
        # work-log record type -> (total, already done, label, unit, screen row)
        stages: dict[str, tuple[int, int, str, str, int]] = {
            "chunk_done": (chunks, len(replay.chunks_done), "generate", "chunk", 0),
            "answer": (queries, len(replay.answers), "answer", "q", 1),
            "written": (queries, len(replay.written), "write", "entry", 3),
        }
        if kv:
            stages["kv"] = (queries, len(replay.kv), "capture KV", "blob", 2)
        self._bars = {
            record: tqdm(total=total, initial=done, desc=label, unit=unit, position=row, disable=not enabled)
            for record, (total, done, label, unit, row) in stages.items()
        }

    def on_query(self, _query_id: str) -> None:
        with self._lock:
            for name in ("answer", "kv", "written"):
                if name in self._bars:
                    self._bars[name].total += 1
                    self._bars[name].refresh()

    def on_record(self, record: Record) -> None:
        bar = self._bars.get(record.kind)
        if bar is not None:
            with self._lock:
                bar.update()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
