"""Prometheus metrics of one server: engine gauges read at scrape time, latency histograms per request.

Each app gets its own registry, so two servers in one process (tests, benchmarks) never share series.
Token counters are cumulative; `rate(precog_backend_generation_tokens_total[1m])` is tokens/s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from precog.backend.outputs import EngineStats

PREFIX = "precog_backend"
# TTFT on a CPU runs from milliseconds (cached prefix) to tens of seconds (long cold prompts under load).
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class _EngineCollector(Collector):
    """Reads one EngineStats snapshot per scrape and reports it as gauges and counters."""

    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        gauges = {
            "queue_length": ("Requests waiting to be scheduled.", s.waiting),
            "running_sequences": ("Sequences in the running batch.", s.running),
            "kv_blocks_used": ("KV-cache blocks held by sequences.", s.kv_blocks_used),
            "kv_blocks_free": (
                "KV-cache blocks free (including revivable prefix-cache blocks).",
                s.kv_blocks_free,
            ),
            "kv_blocks_total": ("KV-cache blocks in the pool.", s.kv_blocks_total),
            "prefix_cache_hit_rate": (
                "Share of prefix-cache block lookups that hit.",
                s.prefix_cache_hit_rate,
            ),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        counters = {
            "prompt_tokens": ("Prompt tokens scheduled.", s.prompt_tokens),
            "generation_tokens": ("Tokens generated.", s.generation_tokens),
            "prefix_cache_queries": ("Prefix-cache block lookups.", s.prefix_cache_queries),
            "prefix_cache_hits": ("Prefix-cache block lookups that hit.", s.prefix_cache_hits),
            "preemptions": ("Sequences preempted (recomputed) for lack of KV blocks.", s.preemptions),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class ServerMetrics:
    """The registry of one app, plus the per-request series the HTTP layer observes."""

    def __init__(self, stats: Callable[[], EngineStats], kv_block_bytes: int) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(stats))
        ProcessCollector(registry=self.registry)
        Gauge(
            f"{PREFIX}_kv_block_bytes",
            "Bytes of one KV block (keys and values of every layer): blocks used x this = KV memory in use.",
            registry=self.registry,
        ).set(kv_block_bytes)
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Admitted generation requests by outcome (finished, aborted by a disconnect, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests",
            "Requests answered with an error, by HTTP status and error code.",
            ["status", "code"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "From request arrival to the first generated token.",
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.inter_token = Histogram(
            f"{PREFIX}_inter_token_latency_seconds",
            "Between consecutive generated tokens of one request.",
            buckets=ITL_BUCKETS,
            registry=self.registry,
        )
        self.e2e = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "From request arrival to its last token.",
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
