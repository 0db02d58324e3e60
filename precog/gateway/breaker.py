"""A circuit breaker: after repeated upstream failures, fail fast instead of piling onto a dead server."""

from __future__ import annotations

import time
from enum import IntEnum


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Closed → (threshold consecutive failures) → open → (reset_s) → half-open: one trial request decides.

    Single event loop only: state changes happen between awaits, so no lock is needed.
    """

    def __init__(self, failure_threshold: int, reset_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if time.monotonic() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a request go upstream now? In half-open state only one trial at a time is let through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def abandon(self) -> None:
        """A request let through gave up before the upstream answered (a hit cancelled the parallel
        request): it proved nothing, so a half-open breaker lets the next request be the trial."""
        self._trial_running = False

    def record_failure(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = time.monotonic()

    def retry_after_s(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_s - (time.monotonic() - self._opened_at))
