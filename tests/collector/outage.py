"""A broker crash under load, measured: clients post one event per request while the broker is
SIGKILLed and started again on the same data; afterwards, what Kafka holds is compared with what
the clients were told. Used by ``test_broker_down.py`` and ``bench/collector_outage.py``."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from clickstream.settings import Settings
from tests.collector.conftest import collector_settings, serve
from tests.collector.test_collector import seed_payload
from tests.conftest import own_broker, read_topic


@dataclass
class Answer:
    sent: float
    answered: float
    status: int
    event_id: str

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


@dataclass
class Outage:
    """What the clients were answered, and what Kafka holds afterwards."""

    answers: list[Answer] = field(default_factory=list)
    killed_at: float = 0.0
    back_at: float = 0.0
    stored: Counter[str] = field(default_factory=Counter)

    def with_status(self, status: int) -> list[Answer]:
        return [a for a in self.answers if a.status == status]

    @property
    def refused_but_stored(self) -> list[Answer]:
        """Answered 503, yet in Kafka."""
        return [a for a in self.with_status(503) if a.event_id in self.stored]

    @property
    def in_flight_at_kill(self) -> list[Answer]:
        """Requests sent before the kill and answered after it: their records may have been on
        the wire (librdkafka's "possibly persisted")."""
        return [a for a in self.answers if a.sent < self.killed_at < a.answered]

    @property
    def acknowledged_missing(self) -> list[str]:
        return [a.event_id for a in self.with_status(200) if a.event_id not in self.stored]

    @property
    def stored_twice(self) -> list[str]:
        return [event_id for event_id, n in self.stored.items() if n > 1]

    def summary(self) -> str:
        refused = self.with_status(503)
        slowest = max((a.seconds for a in refused), default=0.0)
        statuses = Counter(a.status for a in self.answers)
        residue = self.refused_but_stored
        early = [a for a in residue if a.sent < self.killed_at]
        return (
            f"{dict(statuses)}; 503 latency max {slowest:.2f} s; 503 but stored "
            f"{len(residue)} ({len(early)} of them sent before the kill, "
            f"{len(self.in_flight_at_kill)} requests in flight at the kill); "
            f"2xx missing {len(self.acknowledged_missing)}; stored twice "
            f"{len(self.stored_twice)}; broker down {self.back_at - self.killed_at:.1f} s"
        )


def broker_crash(
    settings: Settings,
    data_dir: Path,
    *,
    ack_timeout_s: float = 2.0,
    clients: int = 8,
    before_s: float = 3.0,
    down_s: float = 0.0,
    after_s: float = 3.0,
    freeze: bool = False,
) -> Outage:
    """Load the collector, SIGKILL its broker, keep the load for ``down_s`` (at least until the
    first 503), start the broker again on the same data and port, keep the load until ``after_s``
    after the collector's first 200 since; then read the topic.

    ``freeze``: SIGSTOP the broker instead, and SIGCONT it after ``down_s`` (a stalled broker,
    as in a long pause or a partition: its connections stay open)."""
    broker = own_broker(data_dir)
    base = settings.with_bootstrap(broker.start())
    ours = collector_settings(base, ack_timeout_s=ack_timeout_s)
    collector = serve(ours)
    url = f"{collector.url}/api/webeventspub"
    outage = Outage()
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                event_id = str(uuid.uuid4())
                sent = time.monotonic()
                try:
                    status = http.post(url, json=seed_payload(eventId=event_id)).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    outage.answers.append(Answer(sent, time.monotonic(), status, event_id))

    again = None
    try:
        with ThreadPoolExecutor(clients) as pool:
            for _ in range(clients):
                pool.submit(client)
            time.sleep(before_s)
            outage.killed_at = time.monotonic()
            jvm = broker.jvm_pid()
            assert jvm is not None
            os.kill(jvm, signal.SIGSTOP if freeze else signal.SIGKILL)
            deadline = time.monotonic() + 60
            while not any(a.status == 503 for a in outage.answers[-clients * 4 :]):
                assert time.monotonic() < deadline, "no 503 within 60 s of the kill"
                time.sleep(0.05)
            time.sleep(max(0.0, outage.killed_at + down_s - time.monotonic()))
            if freeze:
                os.kill(jvm, signal.SIGCONT)
            else:
                broker.stop()  # reaps the killed process
                again = own_broker(data_dir, port=broker.port)
                again.start()
            outage.back_at = time.monotonic()
            deadline = outage.back_at + 60  # the collector's producer reconnects within seconds
            while not any(a.status == 200 and a.sent > outage.back_at for a in outage.answers):
                assert time.monotonic() < deadline, "no 200 within 60 s of the broker's return"
                time.sleep(0.05)
            time.sleep(after_s)
            stop.set()
        outage.stored = Counter(
            event["eventId"] for _, event in read_topic(ours, ours.topics.web_events, timeout=30)
        )
        return outage
    finally:
        stop.set()
        collector.stop()
        if again is not None:
            again.stop()
        broker.stop()
