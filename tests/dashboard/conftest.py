"""A real dashboard (uvicorn on a free loopback port) reading a fresh results topic of the test
broker, and helpers to write window counts to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from clickstream.dashboard.app import create_app
from clickstream.dashboard.hub import Hub
from clickstream.events.results import WindowCount, record_key
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from tests.browser.conftest import browser  # noqa: F401  (module-scoped headless Chromium)
from tests.collector.conftest import free_port
from tests.conftest import serve_in_thread


@dataclass
class RunningDashboard:
    url: str
    settings: Settings
    app: Starlette
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def serve(settings: Settings, port: int | None = None, **options: Any) -> RunningDashboard:
    port = port or free_port()
    app = create_app(settings, **options)
    server, thread = serve_in_thread(app, port, "dashboard")
    return RunningDashboard(f"http://127.0.0.1:{port}", settings, app, server, thread)


def with_results_topic(settings: Settings, topic: str, **dashboard: Any) -> Settings:
    topics = settings.topics.model_copy(update={"results": topic})
    section = settings.dashboard.model_copy(update=dashboard)
    return settings.model_copy(update={"topics": topics, "dashboard": section})


@pytest.fixture
def results_settings(settings: Settings, new_topic: Callable[..., str]) -> Settings:
    """Settings whose results topic is a fresh, empty topic of 2 partitions."""
    return with_results_topic(settings, new_topic(partitions=2))


@pytest.fixture
def start_dashboard() -> Iterator[Callable[..., RunningDashboard]]:
    """``start_dashboard(settings, **create_app_options)`` -> a running dashboard."""
    running: list[RunningDashboard] = []

    def start(settings: Settings, port: int | None = None, **options: Any) -> RunningDashboard:
        dashboard = serve(settings, port, **options)
        running.append(dashboard)
        return dashboard

    yield start
    for dashboard in running:
        dashboard.stop()


def now_s() -> int:
    """The current second, in epoch milliseconds."""
    return int(time.time()) * 1000


def windows(
    metric: str, start_ms: int, counts: list[dict[str, int]], width_ms: int = 1000
) -> list[WindowCount]:
    """Rows of consecutive windows from ``start_ms``: one dict of counts by key per window."""
    return [
        WindowCount(
            metric=metric,
            window_start=start_ms + i * width_ms,
            window_end=start_ms + (i + 1) * width_ms,
            key=key,
            count=count,
        )
        for i, by_key in enumerate(counts)
        for key, count in by_key.items()
    ]


def busy_history(base: int, seconds: int = 300, pages: int = 50) -> list[WindowCount]:
    """What 500 events/s leave in five minutes of ``web.pages``: 50 pages seen every second."""
    counts = [
        {f"/blog/2024/how-we-count-clicks-{p:03d}": 1 + (s + p) % 9 for p in range(pages)}
        for s in range(seconds)
    ]
    return windows("web.pages", base - (seconds - 1) * 1000, counts)


def produce_rows(settings: Settings, rows: Sequence[WindowCount | bytes]) -> None:
    """Write rows to the results topic as the jobs do (JSON, key ``metric|start|key``); bytes
    are written as they are, keyed ``bad``."""
    import msgspec

    producer = make_producer(settings, **{"linger.ms": 2})
    for row in rows:
        if isinstance(row, bytes):
            producer.produce(settings.topics.results, row, b"bad")
        else:
            key = record_key(row.metric, row.window_start, row.key)
            producer.produce(settings.topics.results, msgspec.json.encode(row), key.encode())
    producer.flush()
