"""Prometheus metrics of one dashboard (its own registry, so several apps can coexist)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DashboardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connections = Gauge(
            "clickstream_dashboard_connections",
            "Browsers (WebSockets) connected now",
            registry=registry,
        )
        self.results = Counter(
            "clickstream_dashboard_results_received",
            "Window counts read from the results topic",
            registry=registry,
        )
        self.bad_records = Counter(
            "clickstream_dashboard_bad_records",
            "Records of the results topic that are not a window count (skipped)",
            registry=registry,
        )
        self.pushed = Counter(
            "clickstream_dashboard_messages_pushed",
            "Messages queued to browsers (history and updates)",
            registry=registry,
        )
        self.dropped_clients = Counter(
            "clickstream_dashboard_slow_clients_dropped",
            "Browsers disconnected because they did not keep up with updates",
            registry=registry,
        )
        self.kafka_up = Gauge(
            "clickstream_dashboard_kafka_up",
            "1 when the results topic's cluster answers, else 0",
            registry=registry,
        )
