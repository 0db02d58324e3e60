"""Request statistics for /admin/stats and the dashboard: hit rate over time windows, per tenant and model,
latency histograms, and the tokens (and estimated cost) that stored answers saved."""

from __future__ import annotations

import bisect
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

LATENCY_EDGES_MS = (1, 2, 5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_BUCKET_S = 10
_KEEP_S = 3600
WINDOWS_S = {"1m": 60, "5m": 300, "1h": 3600}


@dataclass(slots=True)
class _Bucket:
    start: int
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES_MS) + 1))
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=2048))

    def add(self, ms: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_EDGES_MS, ms)] += 1
        self.samples.append(ms)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples)

        def pct(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None

        return {
            "edges_ms": list(LATENCY_EDGES_MS),
            "counts": list(self.counts),
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
        }


def _rate(outcomes: Counter[str]) -> float | None:
    cacheable = outcomes["hit"] + outcomes["miss"]
    return round(outcomes["hit"] / cacheable, 4) if cacheable else None


class Stats:
    """In-process counters of one replica; cluster totals come from the shared tier when there is one."""

    def __init__(self, cost_per_1k_tokens: float) -> None:
        self.cost_per_1k_tokens = cost_per_1k_tokens
        self.started = time.time()
        self._buckets: deque[_Bucket] = deque()
        self._by_group: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self.tokens_saved = 0
        self.upstream_prompt_tokens = 0
        self.upstream_completion_tokens = 0

    def record(self, tenant: str, model: str, outcome: str, latency_ms: float, tokens_saved: int = 0) -> None:
        now = int(time.time())
        start = now - now % _BUCKET_S
        if not self._buckets or self._buckets[-1].start != start:
            self._buckets.append(_Bucket(start))
            while self._buckets[0].start < now - _KEEP_S:
                self._buckets.popleft()
        self._buckets[-1].outcomes[outcome] += 1
        self._by_group[(tenant, model)][outcome] += 1
        self._latency[outcome].add(latency_ms)
        self.tokens_saved += tokens_saved

    def spend(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens the upstream reported (its `usage`) for a relayed request."""
        self.upstream_prompt_tokens += prompt_tokens
        self.upstream_completion_tokens += completion_tokens

    def _window(self, seconds: int) -> Counter[str]:
        since = time.time() - seconds
        total: Counter[str] = Counter()
        for bucket in self._buckets:
            if bucket.start + _BUCKET_S > since:
                total.update(bucket.outcomes)
        return total

    def hit_rate(self, seconds: int = 300) -> float:
        return _rate(self._window(seconds)) or 0.0

    def snapshot(self) -> dict[str, Any]:
        windows = {}
        for name, seconds in WINDOWS_S.items():
            outcomes = self._window(seconds)
            windows[name] = {"requests": sum(outcomes.values()), "hit_rate": _rate(outcomes), **outcomes}
        groups = [
            {"tenant": tenant, "model": model, "requests": sum(c.values()), "hit_rate": _rate(c), **c}
            for (tenant, model), c in sorted(self._by_group.items())
        ]
        series = [
            {"t": b.start, "requests": sum(b.outcomes.values()), "hit_rate": _rate(b.outcomes)}
            for b in self._buckets
        ]
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "windows": windows,
            "by_tenant_model": groups,
            "latency_ms": {outcome: h.summary() for outcome, h in sorted(self._latency.items())},
            "series": series,
            "tokens_saved": self.tokens_saved,
            "cost_saved_usd": round(self.tokens_saved * self.cost_per_1k_tokens / 1000, 6),
            "upstream_tokens": {
                "prompt": self.upstream_prompt_tokens,
                "completion": self.upstream_completion_tokens,
            },
            "cost_spent_usd": round(
                (self.upstream_prompt_tokens + self.upstream_completion_tokens)
                * self.cost_per_1k_tokens
                / 1000,
                6,
            ),
        }
