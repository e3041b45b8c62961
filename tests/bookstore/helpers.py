"""Bookstore events for tests: good ones with known values, and records that break the contract."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from clickstream.events.bookstore import BookstoreEvent, encode
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

BAD = [
    (b"not json", "not a JSON object"),
    (json.dumps({"event_id": "nope", "event_type": "purchase", "event_time": T0,
                 "user_id": "u", "book_id": "b"}).encode(), "field event_id must be a UUID"),
    (json.dumps({"event_id": str(uuid.uuid4()), "event_type": "wishlist", "event_time": T0,
                 "user_id": "u", "book_id": "b"}).encode(), "field event_type must be one of"),
    (json.dumps({"event_id": str(uuid.uuid4()), "event_type": "purchase", "event_time": T0,
                 "user_id": "u"}).encode(), "missing or invalid field book_id"),
]  # fmt: skip


def make_events(n: int, seed: int, start_ms: int = T0) -> list[BookstoreEvent]:
    rng = random.Random(seed)
    kinds = ["description_open", "description_open", "description_close", "purchase"]
    return [
        BookstoreEvent(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            event_type=rng.choice(kinds),  # type: ignore[arg-type]
            event_time=start_ms + i * 250,
            user_id=f"u-{rng.randrange(20)}",
            book_id=f"b-{rng.randrange(1, 6):04d}",
        )
        for i in range(n)
    ]


def send(settings: Settings, values: list[Any]) -> None:
    producer = make_producer(settings, **{"linger.ms": 5})
    for value in values:
        data = encode(value) if isinstance(value, BookstoreEvent) else value
        producer.produce(settings.topics.bookstore, data, b"k")
    producer.flush()
