"""One progress bar per stage (tqdm: counts, rates, ETA), moved by the work log's records as they land."""

from __future__ import annotations

import threading
from typing import Any

from tqdm import tqdm

from precompute.worklog import Replay


class StageBars:
    def __init__(self, replay: Replay, chunks: int, kv: bool, enabled: bool = True) -> None:
        queries = len(replay.queries)
        self._lock = threading.Lock()
        self._bars = {
            "chunk_done": tqdm(
                total=chunks,
                initial=len(replay.chunks_done),
                desc="generate",
                unit="chunk",
                position=0,
                disable=not enabled,
            ),
            "answer": tqdm(
                total=queries,
                initial=len(replay.answers),
                desc="answer",
                unit="q",
                position=1,
                disable=not enabled,
            ),
            "written": tqdm(
                total=queries,
                initial=len(replay.written),
                desc="write",
                unit="entry",
                position=3,
                disable=not enabled,
            ),
        }
        if kv:
            self._bars["kv"] = tqdm(
                total=queries,
                initial=len(replay.kv),
                desc="capture KV",
                unit="blob",
                position=2,
                disable=not enabled,
            )

    def on_query(self, _query_id: str) -> None:
        with self._lock:
            for name in ("answer", "kv", "written"):
                if name in self._bars:
                    self._bars[name].total += 1
                    self._bars[name].refresh()

    def on_record(self, record: dict[str, Any]) -> None:
        bar = self._bars.get(record["t"])
        if bar is not None:
            with self._lock:
                bar.update()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
