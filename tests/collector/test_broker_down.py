"""Kafka down: the collector answers 503 with Retry-After, never 2xx, and recovers after."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from clickstream.settings import Settings
from tests.collector.conftest import collector_settings, serve
from tests.collector.test_collector import seed_payload
from tests.conftest import own_broker, read_topic

pytestmark = pytest.mark.slow


def test_broker_down_means_503_and_no_lost_acknowledged_event(
    settings: Settings, tmp_path: Path
) -> None:
    own = own_broker(tmp_path / "kafka")
    base = settings.with_bootstrap(own.start())
    port = own.port
    ours = collector_settings(base, ack_timeout_s=2.0)
    topic = ours.topics.web_events
    collector = serve(ours)
    url = f"{collector.url}/api/webeventspub"
    acknowledged: set[str] = set()
    try:
        for _ in range(5):
            response = httpx.post(url, json=seed_payload(eventId=str(uuid.uuid4())), timeout=30)
            assert response.status_code == 200
            acknowledged.add(response.json()["id"])
        assert {e["eventId"] for _, e in read_topic(ours, topic)} == acknowledged

        own.stop()
        started = time.monotonic()
        down = httpx.post(url, json=seed_payload(eventId="during-outage"), timeout=30)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "5"
        assert "Kafka is unavailable" in down.json()["error"]
        assert time.monotonic() - started < 10
        assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 503

        again = own_broker(tmp_path / "kafka", port=port)  # the same data folder
        again.start()
        try:
            after: set[str] = set()
            deadline = time.monotonic() + 60
            while len(after) < 5 and time.monotonic() < deadline:
                response = httpx.post(url, json=seed_payload(eventId=str(uuid.uuid4())), timeout=30)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200:
                    after.add(response.json()["id"])
            assert len(after) == 5
            stored = [e["eventId"] for _, e in read_topic(ours, topic)]
            # Everything acknowledged before the outage survived it, once; nothing answered
            # 503 was stored.
            assert sorted(stored) == sorted(acknowledged | after)
            assert "during-outage" not in stored
        finally:
            again.stop()
    finally:
        collector.stop()
        own.stop()
