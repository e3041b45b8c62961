"""A 3-node Apache Kafka cluster (KRaft, replication factor 3, ``min.insync.replicas`` 2): the
collector keeps taking traffic while one broker is killed, and loses or duplicates nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from clickstream.broker.embedded import EmbeddedBroker, cluster_nodes
from clickstream.kafka.admin import admin_client
from clickstream.settings import Settings
from tests.collector.conftest import collector_settings, serve
from tests.collector.test_collector import seed_payload
from tests.conftest import broker_settings, read_topic, wait_for

pytestmark = pytest.mark.slow

FAILOVER = {
    "min.insync.replicas": "2",
    # Fence a silent broker after 3 s, not Kafka's default 9 s, so its partitions move soon.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmbeddedBroker]]:
    settings = broker_settings(tmp_path_factory.mktemp("cluster"))
    nodes = cluster_nodes(settings, 3, FAILOVER)
    try:
        for node in nodes:  # a node answers only once a quorum of controllers runs
            node.launch()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:  # no clean shutdown: the last node would wait for a quorum
            node.kill()
            node.stop()


@dataclass
class Load:
    """Clients posting one event per request, each with a new event id."""

    url: str
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    """(time answered, status, event id)"""
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                event_id = str(uuid.uuid4())
                response = http.post(self.url, json=seed_payload(eventId=event_id))
                self.answers.append((time.monotonic(), response.status_code, event_id))

    def longest_pause(self, since: float) -> float:
        """The longest time without a 2xx answer, after ``since``."""
        times = sorted(t for t, status, _ in self.answers if status < 300 and t >= since)
        return max(b - a for a, b in zip([since, *times], times, strict=False))


def test_collector_survives_a_killed_broker(cluster: list[EmbeddedBroker]) -> None:
    base: Settings = cluster[0].settings
    bootstrap = ",".join(node.bootstrap for node in cluster)
    topics = base.topics.model_copy(update={"replication_factor": 3})
    settings = base.with_bootstrap(bootstrap).model_copy(update={"topics": topics})
    ours = collector_settings(settings, ack_timeout_s=20.0)
    topic = ours.topics.web_events
    admin = admin_client(ours)

    def partitions() -> list[Any]:
        found = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        return [p for p in found if p.leader >= 0 and len(p.isrs) == 3]

    wait_for(lambda: len(partitions()) == 2 or None, timeout=30)  # as collector_settings makes it
    leaders = Counter(p.leader for p in partitions())
    victim = next(node for node in cluster if node.node.node_id == leaders.most_common(1)[0][0])

    collector = serve(ours)
    load = Load(f"{collector.url}/api/webeventspub")
    try:
        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(load.client)
            time.sleep(5)
            killed_at = time.monotonic()
            victim.kill()  # a leader of the topic, without warning
            time.sleep(20)
            load.stop.set()
    finally:
        collector.stop()

    statuses = Counter(status for _, status, _ in load.answers)
    accepted = [event_id for _, status, event_id in load.answers if status == 200]
    after_kill = [t for t, status, _ in load.answers if status == 200 and t > killed_at]
    assert set(statuses) <= {200, 503}, statuses
    assert len(accepted) > 500, statuses
    assert len(after_kill) > 200, statuses
    pause = load.longest_pause(killed_at)
    assert pause < 10.0, f"no event accepted for {pause:.1f} s after the kill"

    stored = Counter(event["eventId"] for _, event in read_topic(ours, topic, timeout=30))
    missing = [event_id for event_id in accepted if event_id not in stored]
    twice = [event_id for event_id, n in stored.items() if n > 1]
    assert not missing, f"{len(missing)} of {len(accepted)} acknowledged events are not in Kafka"
    assert not twice, f"{len(twice)} events stored more than once"
    print(
        f"\n{len(accepted)} accepted ({statuses}), longest pause after the kill {pause:.2f} s, "
        f"{sum(stored.values())} stored"
    )
