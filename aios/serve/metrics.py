"""`/metrics` in the Prometheus text format (prometheus-client).

Each app has its own `CollectorRegistry`, so two servers in one process (tests) never share
counts. With `--workers N` every worker process reports its own numbers; a scraper sums them
(or scrapes each replica behind the load balancer separately).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class ServerMetrics:
    """Requests, latencies, tokens per second, queue depth and batch size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("aios_requests", "HTTP requests answered",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("aios_request_seconds", "Time from request to full answer",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("aios_time_to_first_token_seconds",
                                     "Time from request to the first streamed event",
                                     ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("aios_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.tokens_per_second = Histogram("aios_tokens_per_second",
                                           "Generated tokens per second of each request",
                                           ["model"], buckets=_RATE_BUCKETS, registry=r)
        self.queue_depth = Gauge("aios_queue_depth", "Requests waiting for a generation slot",
                                 ["model"], registry=r)
        self.active = Gauge("aios_active_generations", "Generations running", ["model"],
                            registry=r)
        self.seated = Gauge("aios_batch_seats", "Generations seated in the step batcher",
                            ["model"], registry=r)
        self.batch_rows = Histogram("aios_batch_rows", "Rows per batched model call",
                                    ["model"], buckets=_BATCH_BUCKETS, registry=r)
        self.failures = Counter("aios_generation_failures", "Generations that failed",
                                ["model", "reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
