"""Prometheus metrics, on a registry owned by one app instance (two gateways in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_MS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "precog_gateway_requests",
            "Requests by endpoint and how they were served.",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "precog_gateway_request_seconds",
            "Time to the response headers, by outcome.",
            ["outcome"],
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "precog_gateway_stage_seconds",
            "Time spent in each lookup stage.",
            ["stage"],
            buckets=_MS_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "precog_gateway_upstream_errors", "Upstream failures by kind.", ["kind"], registry=r
        )
        self.writebacks = Counter(
            "precog_gateway_writebacks", "Answers offered for write-back, by result.", ["result"], registry=r
        )
        self.breaker_state = Gauge(
            "precog_gateway_breaker_state",
            "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=r,
        )
        self.hit_rate = Gauge(
            "precog_gateway_hit_rate", "Hits / cacheable requests over the last five minutes.", registry=r
        )
        self.shared_tier_up = Gauge(
            "precog_gateway_shared_tier_up",
            "1 when the Redis tier answers, 0 when degraded to local.",
            registry=r,
        )
        self.false_hit_estimate = Gauge(
            "precog_gateway_false_hit_rate_estimate",
            "Expected false-hit rate of the stored answers served, from the calibrator's posteriors.",
            ["tenant"],
            registry=r,
        )
        self.false_hit_verified = Gauge(
            "precog_gateway_false_hit_rate_verified",
            "Share of sampled served-eligible hits whose fresh answer disagreed with the stored one.",
            ["tenant"],
            registry=r,
        )
        self.calibration_checks = Counter(
            "precog_gateway_calibration_checks",
            "Would-be hits relayed and compared, by why (verify: sampled; explore: not yet safe) and result.",
            ["tenant", "decision", "result"],
            registry=r,
        )
        self.embed_batch_size = Histogram(
            "precog_gateway_embed_batch_size",
            "Questions embedded per batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )

    def watch(
        self,
        breaker_state: Callable[[], float],
        hit_rate: Callable[[], float],
        shared_tier_up: Callable[[], float],
    ) -> None:
        """Gauges that are read from live components at scrape time."""
        self.breaker_state.set_function(breaker_state)
        self.hit_rate.set_function(hit_rate)
        self.shared_tier_up.set_function(shared_tier_up)

    def render(self) -> bytes:
        return generate_latest(self.registry)
