"""Prometheus metrics of one collector (its own registry, so several apps can coexist)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "clickstream_collector_events_accepted",
            "Events acknowledged by Kafka, by topic",
            ["topic"],
            registry=registry,
        )
        self.rejected = Counter(
            "clickstream_collector_events_rejected",
            "Events refused with a 4xx, by reason",
            ["reason"],
            registry=registry,
        )
        self.clamped = Counter(
            "clickstream_collector_events_clamped",
            "Events whose time was more than collector.max_future_s after their receive time,"
            " stored with the receive time instead",
            registry=registry,
        )
        self.unavailable = Counter(
            "clickstream_collector_unavailable",
            "Requests answered 503 because Kafka did not acknowledge",
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "clickstream_collector_ack_seconds",
            "Time from produce to Kafka's acknowledgement of a request's events",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
