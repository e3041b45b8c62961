"""What the hostile-request tests share: a collector per module, what reached Kafka, raw sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clickstream.settings import Settings
from tests.collector.conftest import RunningCollector, collector_settings, serve
from tests.conftest import read_topic

ONE = "/api/webeventspub"
BATCH = "/v1/events"


@pytest.fixture(scope="module")
def collector(settings: Settings) -> Iterator[RunningCollector]:
    running = serve(collector_settings(settings))
    yield running
    running.stop()


def stored(collector: RunningCollector) -> list[dict[str, Any]]:
    topics = collector.settings.topics
    names = (topics.web_events, topics.web_pings, topics.web_custom)
    return [event for name in names for _, event in read_topic(collector.settings, name)]


def refused(response: httpx.Response, status: int, field: str | None, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert words in body["error"], body
    assert body.get("field") == field, body


def raw_request(collector: RunningCollector, head: bytes, body: bytes = b"") -> socket.socket:
    host, port = collector.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head + body)
    return sock


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data
