"""The stream-joins scenario's two simulators (the seed's App1 and App2).

* :func:`simulate_users`: Faker users (``ru_RU`` names, as the seed), each with an email and a
  ``user_id`` derived from it by a stable hash (:func:`~clickstream.events.joins.user_id_of`),
  to ``joins.users_topic``.
* :func:`simulate_page_events`: a consumer group reading ``joins.users_topic``; for each user,
  1-10 page events (``click``, ``scroll``, ``submit``, ``download``, ``focus``) on 100 fake
  pages, to ``joins.events_topic``. The group's offsets are committed once the events of the
  users before them are acknowledged by Kafka, so a restart goes on after the last user done
  (a crash between the two may repeat the users of one poll, never skip one).

Both take a rate (records/s, 0: flat out), a count, or run endless until Ctrl-C.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import TopicPartition

from clickstream.errors import ConfigError
from clickstream.events.joins import EVENTS, TIME_FORMAT, user_id_of
from clickstream.kafka.clients import make_consumer, make_producer
from clickstream.settings import Settings

PAGES = 100
GROUP = "clickstream-page-events"


@dataclass
class JoinSimStats:
    users: int = 0
    events: int = 0


def _now() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def _check(rate: float, count: int | None, endless: bool) -> None:
    if rate < 0:
        raise ConfigError(f"rate must be >= 0 per second, got {rate}")
    if count is None and not endless:
        raise ConfigError("give count to bound the simulation, or endless")


class _Pacer:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, done: int) -> None:
        if self.rate:
            due = self.start + done / self.rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())


def make_user(fake: object) -> dict[str, str]:
    email = fake.ascii_free_email()  # type: ignore[attr-defined]
    return {
        "event_timestamp": _now(),
        "user_id": user_id_of(email),
        "email": email,
        "name": fake.name(),  # type: ignore[attr-defined]
    }


def simulate_users(
    settings: Settings,
    *,
    rate: float = 1.0,
    count: int | None = None,
    endless: bool = False,
    seed: int | None = None,
    progress: Callable[[JoinSimStats], None] | None = None,
) -> JoinSimStats:
    from faker import Faker

    _check(rate, count, endless)
    fake = Faker("ru_RU")
    if seed is not None:
        fake.seed_instance(seed)
    producer = make_producer(settings)
    stats, pacer = JoinSimStats(), _Pacer(rate)
    topic = settings.joins.users_topic
    try:
        while count is None or stats.users < count:
            pacer.wait(stats.users)
            user = make_user(fake)
            producer.produce(topic, json.dumps(user, ensure_ascii=False).encode(), user["user_id"])
            producer.poll(0)
            stats.users += 1
            if progress is not None:
                progress(stats)
    finally:
        producer.flush()
    return stats


def fake_pages(seed: int | None) -> list[str]:
    from faker import Faker

    fake = Faker()
    fake.seed_instance(seed if seed is not None else 3)
    return [fake.url() for _ in range(PAGES)]


def simulate_page_events(
    settings: Settings,
    *,
    rate: float = 0.0,
    count: int | None = None,
    endless: bool = False,
    seed: int | None = None,
    group_id: str = GROUP,
    idle_s: float | None = None,
    progress: Callable[[JoinSimStats], None] | None = None,
) -> JoinSimStats:
    """Read users, write their events; stop after ``count`` users (or ``idle_s`` without one)."""
    _check(rate, count, endless)
    rng = random.Random(seed)
    pages = fake_pages(seed)
    producer = make_producer(settings)
    consumer = make_consumer(settings, group_id)
    consumer.subscribe([settings.joins.users_topic])
    stats, pacer = JoinSimStats(), _Pacer(rate)
    last_seen = time.monotonic()
    try:
        while count is None or stats.users < count:
            wanted = 500 if count is None else min(500, count - stats.users)
            messages = consumer.consume(wanted, 0.5)
            good = [m for m in messages if m.error() is None]
            if not good:
                if idle_s is not None and time.monotonic() - last_seen > idle_s:
                    break
                continue
            last_seen = time.monotonic()
            for message in good:
                try:
                    user = json.loads(message.value() or b"")
                    user_id = str(user["user_id"])
                except (ValueError, KeyError, TypeError):
                    continue  # not a user: the joins job dead-letters it
                for _ in range(rng.randint(1, 10)):
                    pacer.wait(stats.events)
                    event = {
                        "event_timestamp": _now(),
                        "user_id": user_id,
                        "page": rng.choice(pages),
                        "event": rng.choice(EVENTS),
                    }
                    producer.produce(
                        settings.joins.events_topic, json.dumps(event).encode(), user_id
                    )
                    producer.poll(0)
                    stats.events += 1
                stats.users += 1
            producer.flush()  # raises unless every event was acknowledged
            ends: dict[tuple[str, int], int] = {}
            for message in good:
                key = (str(message.topic()), int(message.partition() or 0))
                ends[key] = max(ends.get(key, 0), int(message.offset() or 0) + 1)
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                asynchronous=False,
            )
            if progress is not None:
                progress(stats)
    finally:
        consumer.close()
    return stats
