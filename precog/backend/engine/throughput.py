"""Prefill and decode tokens/s, logged as structured lines at a fixed interval while the engine works."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("precog.backend.engine")


class ThroughputLog:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._since = time.monotonic()
        self._prefill_tokens = 0
        self._decode_tokens = 0

    def record(self, prefill_tokens: int, decode_tokens: int, **gauges: int) -> None:
        self._prefill_tokens += prefill_tokens
        self._decode_tokens += decode_tokens
        elapsed = time.monotonic() - self._since
        if elapsed < self.interval_s:
            return
        log.info(
            "engine throughput",
            extra={
                "prefill_tok_s": round(self._prefill_tokens / elapsed, 1),
                "decode_tok_s": round(self._decode_tokens / elapsed, 1),
                **gauges,
            },
        )
        self._since = time.monotonic()
        self._prefill_tokens = self._decode_tokens = 0
