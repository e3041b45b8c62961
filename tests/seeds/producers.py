"""The seeds' own producers, restored as test fixtures: each sends what its tutorial's code sent,
in the same loop, with the tutorial's topic names and record shapes. The tutorials use
kafka-python's ``KafkaProducer``; :class:`KafkaProducer` here is that API (``send(topic,
value)``, ``value_serializer``) over confluent-kafka, so the loops read as the tutorials wrote
them. Only the pauses between records are parameters (a tutorial's 0.1 s per record would make
a test of a few hundred records take a minute)."""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition


@contextlib.contextmanager
def host_clock(zone: str) -> Iterator[None]:
    """This process's local time zone is ``zone`` meanwhile, as a producer's host had its own
    (``datetime.now()``, ``fromtimestamp`` and Faker's dates give local times there)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


class KafkaProducer:
    """kafka-python's ``KafkaProducer``, as far as the seeds use it."""

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        value_serializer: Callable[[Any], bytes] | None = None,
    ) -> None:
        servers = (
            bootstrap_servers if isinstance(bootstrap_servers, str) else ",".join(bootstrap_servers)
        )
        self._producer = Producer({"bootstrap.servers": servers, "linger.ms": 5})
        self._serialize = value_serializer or (lambda value: value)

    def send(self, topic: str, value: Any = None, key: bytes | None = None) -> None:
        self._producer.produce(topic, self._serialize(value), key)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        assert left == 0, f"{left} records were not delivered"


def records_with_times(settings: Any, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    """Every record of ``topic``: (Kafka timestamp ms, value, key)."""
    consumer = Consumer(
        {
            "bootstrap.servers": str(settings.kafka.bootstrap_servers),
            "group.id": "records-with-times",
            "enable.auto.commit": False,
        }
    )
    found = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            consumer.assign([TopicPartition(topic, partition, low)])
            got = 0
            while got < high - low:
                msg = consumer.poll(5)
                assert msg is not None, f"{topic}[{partition}]: records missing"
                if msg.error():
                    continue
                got += 1
                found.append((msg.timestamp()[1], msg.value() or b"", msg.key()))
    finally:
        consumer.close()
    return sorted(found)


def seed_001(producer: KafkaProducer, path: Path, topic: str = "sex", pause_s: float = 0.1) -> None:
    """Seed 001, "2.1 Create Producer": each row of user_log.csv but the header, its gender
    (``line[9]``) alone, one every ``pause_s``, to topic ``sex``."""
    with open(path, encoding="UTF-8") as csvfile:
        for line in csv.reader(csvfile):
            gender = line[9]
            if gender == "gender":
                continue
            time.sleep(pause_s)
            producer.send(topic, line[9].encode("utf8"))
    producer.flush()


def seed_000_record(hit: dict[str, Any]) -> dict[str, str]:
    """Seed 000's Flask API (``resources/webevents.py``): what ``reqparse`` makes of the
    snippet's JSON. Every argument is ``type=str`` but ``timestamp``, which becomes the local
    time of the API's host, ``%Y-%m-%d %H:%M:%S``; arguments the parser does not name
    (``pageTitle``) are left out."""
    strings = ("pageUrl", "lastPageVisited", "eventType", "uiud", "sessionId", "referrer",
               "landingPage")  # fmt: skip
    data = {name: str(hit[name]) for name in strings}
    data["timestamp"] = datetime.datetime.fromtimestamp(hit["timestamp"] / 1000.0).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    return data


def seed_000(producer_servers: str, hits: list[dict[str, Any]], topic: str = "webevent") -> None:
    """Seed 000's API posting each hit: ``producer.send("webevent", value=data)`` with
    ``value_serializer=lambda v: json.dumps(v).encode('utf-8')``."""
    producer = KafkaProducer(
        bootstrap_servers=[producer_servers],
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
    )
    for hit in hits:
        producer.send(topic, value=seed_000_record(hit))
    producer.flush()


def seed_003_users(
    servers: str, count: int, topic: str = "CorpAppsTopic", pause_s: float = 3.0
) -> list[dict[str, str]]:
    """Seed 003's first app: a user every ``pause_s`` (the seed's loop never ends: ``count``
    here), Faker ``ru_RU`` names and emails, ``user_id`` the string of the email's hash,
    ``event_timestamp`` the local time. Returns what it published."""
    from faker import Faker
    from faker.providers.person.ru_RU import Provider

    producer = KafkaProducer(
        bootstrap_servers=[servers], value_serializer=lambda v: json.dumps(v).encode("utf-8")
    )
    fake = Faker("ru_RU")
    fake.add_provider(Provider)
    published = []
    for _ in range(count):
        now = datetime.datetime.now()
        event_timestamp = now.strftime("%Y-%m-%d %H:%M:%S")
        email = fake.ascii_free_email()
        name = fake.name()
        user_id = str(hash(email))
        data = {
            "event_timestamp": event_timestamp,
            "user_id": user_id,
            "email": email,
            "name": name,
        }
        producer.send(topic, value=data)
        published.append(data)
        time.sleep(pause_s)
    producer.flush()
    return published


def seed_003_events(
    servers: str,
    users: int,
    topic_from: str = "CorpAppsTopic",
    topic_to: str = "test",
    rng: random.Random | None = None,
) -> list[dict[str, str]]:
    """Seed 003's second app: for each user read from ``CorpAppsTopic`` (from the earliest,
    until ``users`` were read: the seed's loop never ends), 1-10 page events of one of 100
    Faker URLs, stamped with the local time, to ``test``. Returns what it published."""
    from faker import Faker

    rng = rng or random.Random()
    producer = KafkaProducer(
        bootstrap_servers=[servers], value_serializer=lambda v: json.dumps(v).encode("utf-8")
    )
    fake = Faker()
    pages = [fake.url() for _ in range(100)]
    events = ["click", "scroll", "submit", "download", "focus"]
    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": f"a-{time.time_ns()}",
         "auto.offset.reset": "earliest", "enable.auto.commit": True}
    )  # fmt: skip
    consumer.subscribe([topic_from])
    published = []
    read = 0
    deadline = time.monotonic() + 60
    try:
        while read < users:
            assert time.monotonic() < deadline, f"read {read} of {users} users"
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            read += 1
            data_consumed = json.loads(message.value() or b"null")
            user_id = data_consumed["user_id"]
            for _ in range(rng.randint(1, 10)):
                now = datetime.datetime.now()
                event_timestamp = now.strftime("%Y-%m-%d %H:%M:%S")
                data_publish = {"event_timestamp": event_timestamp, "user_id": user_id,
                                "page": rng.choice(pages), "event": rng.choice(events)}  # fmt: skip
                producer.send(topic_to, value=data_publish)
                published.append(data_publish)
    finally:
        consumer.close()
    producer.flush()
    return published


def seed_003_aggregates(
    users: list[dict[str, str]], events: list[dict[str, str]]
) -> tuple[dict[tuple[str, str, str], int], dict[str, int]]:
    """Seed 003's third app's answer over everything sent: pandas merges the events with the
    users on ``user_id`` and counts per (user_id, name, email), and counts the events per
    type."""
    import pandas as pd

    df_users = pd.DataFrame(users)
    df_events = pd.DataFrame(events)
    merged_df = pd.merge(df_events, df_users, left_on="user_id", right_on="user_id")
    user_event_counts = (
        merged_df.groupby(["user_id", "name", "email"]).size().reset_index(name="event_count")
    )
    event_counts = df_events.groupby("event").size().reset_index(name="count")
    per_user = {
        (r.user_id, r.name, r.email): int(r.event_count) for r in user_event_counts.itertuples()
    }
    return per_user, {r.event: int(r.count) for r in event_counts.itertuples()}
