"""Kafka down: the collector answers 503 with Retry-After, never 2xx, and recovers after."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import BrokerSettings, Settings
from tests.collector.conftest import collector_settings, serve
from tests.collector.test_collector import seed_payload
from tests.conftest import read_topic

pytestmark = pytest.mark.slow


def test_broker_down_means_503_and_no_lost_acknowledged_event(settings: Settings) -> None:
    own = EmbeddedBroker(BrokerSettings(port=0))
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

        own.stop()  # an in-memory broker: what it held is gone with it
        started = time.monotonic()
        down = httpx.post(url, json=seed_payload(eventId="during-outage"), timeout=30)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "5"
        assert "Kafka is unavailable" in down.json()["error"]
        assert time.monotonic() - started < 10
        assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 503

        again = EmbeddedBroker(BrokerSettings(port=port))
        again.start()
        try:
            ensure_topics(ours, [topic], 2)
            after: set[str] = set()
            deadline = time.monotonic() + 60
            while len(after) < 5 and time.monotonic() < deadline:
                response = httpx.post(url, json=seed_payload(eventId=str(uuid.uuid4())), timeout=30)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200:
                    after.add(response.json()["id"])
            assert len(after) == 5
            stored = {e["eventId"] for _, e in read_topic(ours, topic)}
            assert after <= stored
            assert "during-outage" not in stored
        finally:
            again.stop()
    finally:
        collector.stop()
        own.stop()
