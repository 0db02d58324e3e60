"""Per-invocation limits: total tokens and wall time, checked before every upstream call.

A call reserves its worst case (prompt tokens + max_tokens) before it starts and settles to the usage the
server reports, so concurrent calls together never pass `max_total_tokens`.
"""

from __future__ import annotations

import threading
import time


class Budget:
    def __init__(self, max_tokens: int | None, max_seconds: float | None) -> None:
        self.max_tokens = max_tokens
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self.spent = 0
        self._reserved = 0
        self._lock = threading.Lock()

    def reserve(self, tokens: int) -> str | None:
        """Reserve `tokens`; returns why not (a budget reached) instead, reserving nothing."""
        with self._lock:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return "wall-time budget reached"
            if self.max_tokens is not None and self.spent + self._reserved + tokens > self.max_tokens:
                return "token budget reached"
            self._reserved += tokens
            return None

    def settle(self, reserved: int, used: int) -> None:
        with self._lock:
            self._reserved -= reserved
            self.spent += used
