"""A real collector (uvicorn on a free loopback port) producing to the test broker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from clickstream.broker.embedded import free_port
from clickstream.collector.app import create_app
from clickstream.collector.server import uvicorn_config
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings


@dataclass
class RunningCollector:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def serve(settings: Settings, port: int | None = None) -> RunningCollector:
    """The collector on uvicorn as ``clickstream collector`` configures it (its deadlines for
    slow senders included), in a thread."""
    port = port or free_port()
    from tests.conftest import serve_config_in_thread

    config = uvicorn_config(settings, create_app(settings), "127.0.0.1", port, lifespan="on")
    server, thread = serve_config_in_thread(config, "collector")
    return RunningCollector(f"http://127.0.0.1:{port}", settings, server, thread)


def collector_settings(settings: Settings, **collector: Any) -> Settings:
    """``settings`` with fresh topics (so tests read only their own events) and overrides."""
    suffix = uuid.uuid4().hex[:8]
    topics = settings.topics.model_copy(
        update={
            "web_events": f"webevent-{suffix}",
            "web_pings": f"webevent-{suffix}.ping",
            "web_custom": f"webevent-{suffix}.custom",
        }
    )
    ensure_topics(settings, [topics.web_events, topics.web_pings, topics.web_custom], 2)
    section = settings.collector.model_copy(update=collector)
    return settings.model_copy(update={"topics": topics, "collector": section})


@pytest.fixture
def start_collector(settings: Settings) -> Iterator[Callable[..., RunningCollector]]:
    """``start_collector(**collector_settings)`` -> a running collector, stopped after the test."""
    running: list[RunningCollector] = []

    def start(port: int | None = None, **overrides: Any) -> RunningCollector:
        collector = serve(collector_settings(settings, **overrides), port)
        running.append(collector)
        return collector

    yield start
    for collector in running:
        collector.stop()
