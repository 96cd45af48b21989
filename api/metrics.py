"""Prometheus metrics of one API process, in its own registry (tests build many apps per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cityeye.api.ingest import Handled, Outcome
from cityeye.api.store import utcnow

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "cityeye_ingest_messages",
            "MQTT messages handled, by outcome (applied, duplicate, ignored, rejected, error) and reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.lag = Histogram(
            "cityeye_ingest_lag_seconds",
            "Arrival time minus observation time of applied events (edge -> broker -> store).",
            ["kind"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.requests = Histogram(
            "cityeye_http_request_duration_seconds",
            "HTTP request latency by route template, method and status class.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "cityeye_http_rate_limited", "Requests refused with 429 by the public rate limit.", registry=r
        )
        self.live_clients = Gauge("cityeye_live_clients", "Open live-update streams.", registry=r)
        self.live_dropped = Counter(
            "cityeye_live_dropped_clients", "Live clients dropped because they read too slowly.", registry=r
        )
        self.push = Counter(
            "cityeye_push_batches",
            "Batches pushed to the webhook/context broker, by result.",
            ["result"],
            registry=r,
        )
        self.push_pending = Gauge(
            "cityeye_push_pending_entities", "Entities waiting to be pushed.", registry=r
        )
        self.zones = Gauge("cityeye_index_zones", "Zones in the in-memory nearby index.", registry=r)
        self.index_age = Gauge(
            "cityeye_index_age_seconds",
            "Seconds since the zone index last caught up with the database.",
            registry=r,
        )

    def on_handled(self, h: Handled) -> None:
        reason = h.reason.value if h.reason is not None else ""
        self.messages.labels(h.outcome.value, reason).inc()
        if h.outcome is Outcome.APPLIED and h.event is not None:
            lag = (utcnow() - h.event.observed_at).total_seconds()
            self.lag.labels(h.event.kind).observe(max(lag, 0.0))
