"""Prometheus metrics of one dashboard (its own registry, so several apps can coexist)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Freshness = Mapping[str, tuple[int | None, int | None]]
"""Per metric (a panel's ``data-metric``): (newest event time counted, last written), epoch ms."""


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
        self.stale_after = Gauge(
            "clickstream_dashboard_stale_after_seconds",
            "Age past which a panel's data is shown as stale (dashboard.stale_after_s)",
            registry=registry,
        )

    def watch_freshness(self, read: Callable[[], Freshness], stale_after_s: float) -> None:
        """Expose ``clickstream_freshness_seconds{panel}``, read from ``read`` at each scrape."""
        self.stale_after.set(stale_after_s)
        self.registry.register(_FreshnessCollector(read))


class _FreshnessCollector(Collector):
    """``clickstream_freshness_seconds{panel}``: how old each panel's newest data is, as its
    age on the dashboard: now minus the newest event time its counts include, or minus the
    time they were written where they carry no event time."""

    def __init__(self, read: Callable[[], Freshness]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "clickstream_freshness_seconds",
            "How old each panel's newest data is: now minus the newest event time counted "
            "(minus the time of writing where the counts carry no event time)",
            labels=["panel"],
        )
        now_ms = time.time() * 1000
        for panel, (event, written) in sorted(self.read().items()):
            at = event if event is not None else written
            if at is not None:
                family.add_metric([panel], max(0.0, (now_ms - at) / 1000))
        yield family
