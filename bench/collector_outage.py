"""What a 503 from the collector means when its broker fails under load.

    python bench/collector_outage.py [--runs 3] [--ack-timeout 5] [--clients 8] [--freeze]
        [--markdown] [--smoke]

Each run: a fresh embedded broker and a collector (`clickstream collector`) taking single events
from --clients clients, each event with its own id; after 3 s the broker's JVM is SIGKILLed (or,
with --freeze, SIGSTOPped: a stalled broker whose connections stay open) and brought back after
twice the ack timeout (a killed broker is started again on the same data and port, which takes a
while). Afterwards the topic is read and compared with what the clients were answered: 503s
whose event is in Kafka anyway ("503 but stored"), and of those how many were sent before the
failure (their records could be on the wire: librdkafka's "possibly persisted"); 2xx answers
missing from Kafka or stored twice; the slowest 503. (tests/collector/test_broker_down.py
asserts the same on one run.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from argparse import ArgumentParser
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.children import spawn, stop
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.config import consumer_config
from clickstream.kafka.offsets import partitions_of, watermarks
from clickstream.settings import Settings, load_settings
from collector import seed_payload
from common import JARS_DIR, console, free_port, options, print_table
from dashboard_latency import wait_http

SMOKE = {"runs": 1, "ack_timeout": 1.0, "clients": 2}
BEFORE_S = AFTER_S = 3.0


@dataclass
class Answer:
    sent: float
    answered: float
    status: int
    event_id: str


@dataclass
class Outage:
    """What the clients were answered, and what Kafka holds afterwards."""

    answers: list[Answer] = field(default_factory=list)
    killed_at: float = 0.0
    back_at: float = 0.0
    stored: Counter[str] = field(default_factory=Counter)

    def row(self, run: int) -> list[object]:
        refused = [a for a in self.answers if a.status == 503]
        residue = [a for a in refused if a.event_id in self.stored]
        acked = [a for a in self.answers if a.status == 200]
        statuses = sorted(Counter(a.status for a in self.answers).items())
        return [
            run,
            ", ".join(f"{s}: {n}" for s, n in statuses),
            f"{max((a.answered - a.sent for a in refused), default=0.0):.2f}",
            len(residue),
            sum(1 for a in residue if a.sent < self.killed_at),
            sum(1 for a in self.answers if a.sent < self.killed_at < a.answered),
            sum(1 for a in acked if a.event_id not in self.stored),
            sum(1 for n in self.stored.values() if n > 1),
            f"{self.back_at - self.killed_at:.1f}",
        ]  # fmt: skip


HEADS = ("run", "answers by status", "503 max (s)", "503 but stored", "of them sent before",
         "in flight at the failure", "2xx missing", "stored twice", "broker down (s)")  # fmt: skip


def broker_at(data_dir: Path, port: int = 0) -> EmbeddedBroker:
    settings = load_settings(
        environ={
            "CLICKSTREAM_DATA_DIR": str(data_dir),
            "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
            "CLICKSTREAM_BROKER_PORT": str(port),
            "CLICKSTREAM_BROKER_CONTROLLER_PORT": "0",
        }
    )
    return EmbeddedBroker(settings, log_file=data_dir / "broker.log")


def stored_ids(settings: Settings, topic: str) -> Counter[str]:
    """The eventIds in ``topic``, with how often each is there."""
    probe = Consumer(consumer_config(settings, None, **{"enable.partition.eof": True}))
    try:
        marks = watermarks(probe, partitions_of(probe, [topic], 30), 30)
    finally:
        probe.close()
    consumer = Consumer(consumer_config(settings))
    ids: Counter[str] = Counter()
    try:
        for (name, partition), (low, high) in marks.items():
            consumer.assign([TopicPartition(name, partition, low)])
            got, deadline = 0, time.monotonic() + 30
            while got < high - low and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    ids[json.loads(msg.value() or b"{}").get("eventId", "")] += 1
                    got += 1
    finally:
        consumer.close()
    return ids


def one_run(data_dir: Path, ack_timeout_s: float, clients: int, freeze: bool) -> Outage:
    """Load the collector, kill (or freeze) its broker for twice the ack timeout, bring it back,
    keep the load until 3 s after the first 200 since; then read the topic."""
    down_s = 2 * ack_timeout_s
    broker = broker_at(data_dir)
    bootstrap = broker.start()
    topic = f"webevent-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env |= {
        "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CLICKSTREAM_DATA_DIR": str(data_dir / "collector"),
        "CLICKSTREAM_TOPICS_WEB_EVENTS": topic,
        "CLICKSTREAM_TOPICS_WEB_PINGS": f"{topic}.ping",
        "CLICKSTREAM_TOPICS_WEB_CUSTOM": f"{topic}.custom",
        "CLICKSTREAM_COLLECTOR_ACK_TIMEOUT_S": str(ack_timeout_s),
    }
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("CLICKSTREAM")})
    ensure_topics(settings, [topic, f"{topic}.ping", f"{topic}.custom"], 2)
    argv = [sys.executable, "-m", "clickstream", "collector", "--port", str(port)]
    collector = spawn(argv, log_file=data_dir / "collector.log", env=env)
    url = f"http://127.0.0.1:{port}/api/webeventspub"
    outage = Outage()
    done = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not done.is_set():
                event_id = str(uuid.uuid4())
                sent = time.monotonic()
                try:
                    status = http.post(url, json=seed_payload(eventId=event_id)).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    outage.answers.append(Answer(sent, time.monotonic(), status, event_id))

    def wait(what: str, until: float, ready: Callable[[], bool]) -> None:
        while not ready():
            if time.monotonic() > until:
                raise SystemExit(f"no {what} within 60 s: see {data_dir}/*.log")
            time.sleep(0.05)

    again = None
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        with ThreadPoolExecutor(clients) as pool:
            for _ in range(clients):
                pool.submit(client)
            time.sleep(BEFORE_S)
            outage.killed_at = time.monotonic()
            jvm = broker.jvm_pid()
            if jvm is None:
                raise SystemExit("the broker's JVM is gone before the failure")
            os.kill(jvm, signal.SIGSTOP if freeze else signal.SIGKILL)
            tail = clients * 4
            wait(
                "503",
                time.monotonic() + 60,
                lambda: any(a.status == 503 for a in outage.answers[-tail:]),
            )
            time.sleep(max(0.0, outage.killed_at + down_s - time.monotonic()))
            if freeze:
                os.kill(jvm, signal.SIGCONT)
            else:
                broker.stop()  # reaps the killed process
                again = broker_at(data_dir, port=broker.port)
                again.start()
            outage.back_at = time.monotonic()
            wait(
                "200 after the broker's return",
                outage.back_at + 60,
                lambda: any(a.status == 200 and a.sent > outage.back_at for a in outage.answers),
            )
            time.sleep(AFTER_S)
            done.set()
        outage.stored = stored_ids(settings, topic)
        return outage
    finally:
        done.set()
        stop(collector)
        if again is not None:
            again.stop()
        broker.stop()


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ack-timeout", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--freeze", action="store_true", help="SIGSTOP instead of SIGKILL")
    args = options(parser, SMOKE)
    logging.getLogger("clickstream.kafka").setLevel(logging.CRITICAL)
    rows = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
            outage = one_run(Path(tmp), args.ack_timeout, args.clients, args.freeze)
        rows.append(outage.row(run))
        console.print(f"run {run}: {rows[-1]}")
    how = "SIGSTOP" if args.freeze else "SIGKILL"
    title = f"broker {how} under load: {args.clients} clients, ack timeout {args.ack_timeout:g} s"
    print_table(HEADS, rows, markdown=args.markdown, title=title, left=HEADS[:2])


if __name__ == "__main__":
    main()
