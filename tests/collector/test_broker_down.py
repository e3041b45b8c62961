"""Kafka down: the collector answers 503 with Retry-After, never 2xx, and recovers after. A 503
comes within the ack timeout and means the event was not stored (see ``outage.py``)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from clickstream.settings import Settings
from tests.collector.conftest import collector_settings, serve
from tests.collector.outage import broker_crash
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
        assert time.monotonic() - started < 2.0 + 0.5
        assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 503

        again = own_broker(tmp_path / "kafka", port=port)  # the same data folder
        again.start()
        try:
            # Back up with no traffic at all: /healthz says so by itself.
            deadline = time.monotonic() + 30
            health = httpx.get(f"{collector.url}/healthz", timeout=10)
            while health.status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
                health = httpx.get(f"{collector.url}/healthz", timeout=10)
            assert health.json() == {"status": "ok", "kafka": "up"}
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


def test_broker_killed_under_load_503_comes_in_time_and_means_not_stored(
    settings: Settings, tmp_path: Path
) -> None:
    ack_timeout_s = 2.0
    outage = broker_crash(settings, tmp_path / "kafka", ack_timeout_s=ack_timeout_s)
    print(f"\n{outage.summary()}")
    assert {a.status for a in outage.answers} == {200, 503}
    assert any(a.status == 200 and a.sent > outage.back_at for a in outage.answers)
    slowest = max(a.seconds for a in outage.with_status(503))
    # librdkafka's own verdict answers, before the deadline (not a timer of ours after it).
    assert slowest < ack_timeout_s + 0.25, outage.summary()
    assert outage.acknowledged_missing == []
    assert outage.stored_twice == []
    # A 503'd event is in Kafka only if its record may have been on the wire when the broker
    # died (sent before the kill); none sent later is.
    in_flight = {a.event_id for a in outage.in_flight_at_kill}
    assert {a.event_id for a in outage.refused_but_stored} <= in_flight, outage.summary()
