"""``clickstream collector --server``: the same app on uvicorn (default) and granian, as the
command runs it (its own process, settings from the environment). The command finds the
embedded broker at its configured port; worker processes get that address from it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from clickstream.broker.embedded import EmbeddedBroker, free_port
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings
from tests.collector.test_collector import seed_payload
from tests.conftest import cli_env, read_topic, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("server", "workers"), [("uvicorn", 1), ("granian", 1), ("uvicorn", 2)])
def test_collector_command_serves_on_each_server(
    broker: EmbeddedBroker, settings: Settings, server: str, workers: int
) -> None:
    port = free_port("127.0.0.1")
    topic = f"web-{uuid.uuid4().hex[:8]}"
    ours = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"web_events": topic})}
    )
    ensure_topics(ours, [topic])
    env = cli_env(
        CLICKSTREAM_BROKER_PORT=str(broker.port),  # found there, not configured
        CLICKSTREAM_TOPICS_WEB_EVENTS=topic,
        CLICKSTREAM_COLLECTOR_SERVER=server,
        CLICKSTREAM_COLLECTOR_HEADER_TIMEOUT_S="1",
    )
    args = ["collector", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60)
        event_id = str(uuid.uuid4())
        answer = httpx.post(f"{base}/api/webeventspub", json=seed_payload(eventId=event_id))
        assert answer.status_code == 200, answer.text
        bad = httpx.post(f"{base}/api/webeventspub", content=b"{", timeout=10)
        assert bad.status_code == 400
        assert [e["eventId"] for _, e in read_topic(ours, topic)] == [event_id]
        # A client that never finishes its headers is closed at the header timeout.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /api/webeventspub HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            while slow.recv(4096):
                pass
            assert time.monotonic() - started < 5
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    output = process.stdout.read().decode()  # type: ignore[union-attr]
    assert f"({server}, {workers} worker{'s' if workers > 1 else ''})" in output
