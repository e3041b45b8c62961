"""Bookstore visitors (``clickstream simulate bookstore``): events straight into Kafka.

A visitor looks at a few books. On a book's page they open its description with probability
:data:`P_OPEN`; having read it they close it (:data:`P_CLOSE`) and then sometimes buy the book
(:data:`P_BUY` of the opens; a purchase without reading is rarer, :data:`P_BUY_UNREAD`). A few
books are much more popular than the rest (Zipf-like weights), so the dashboard's top books mean
something. Events are :class:`~clickstream.events.bookstore.BookstoreEvent` JSON keyed by
``user_id``, stamped with the wall clock, sent ``rate`` per second (0: as fast as possible),
``count`` of them or until stopped.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from clickstream.bookstore.catalogue import catalogue
from clickstream.errors import ConfigError
from clickstream.events.bookstore import BookstoreEvent, encode, new_event
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings

DEFAULT_RATE = 20.0
P_OPEN = 0.55
P_CLOSE = 0.85
P_BUY = 0.12
P_BUY_UNREAD = 0.01
CHUNK_S = 0.01


@dataclass
class BookstoreStats:
    topic: str
    sent: int = 0
    delivered: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    interrupted: bool = False

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_type.items()))
        return f"sent {self.sent} bookstore events to {self.topic} ({kinds})"


def visitors(
    book_ids: list[str], seed: int | None, clock: Callable[[], int]
) -> Iterator[BookstoreEvent]:
    """An endless stream of visitors' events, in the order they happen."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(book_ids))]
    visitor = 0
    while True:
        visitor += 1
        user = f"u-{rng.randrange(1, 1_000_000):06d}"
        for book in rng.choices(book_ids, weights, k=rng.randint(1, 4)):
            opened = rng.random() < P_OPEN
            if opened:
                yield new_event("description_open", user, book, clock())
                if rng.random() < P_CLOSE:
                    yield new_event("description_close", user, book, clock())
            if rng.random() < (P_BUY if opened else P_BUY_UNREAD):
                yield new_event("purchase", user, book, clock())


def simulate_bookstore(
    settings: Settings,
    *,
    rate: float = DEFAULT_RATE,
    count: int | None = None,
    seed: int | None = None,
    stop: threading.Event | None = None,
    topic: str | None = None,
    progress: Callable[[BookstoreStats], None] | None = None,
) -> BookstoreStats:
    """Send visitors' events until ``count`` were sent, ``stop`` is set, or Ctrl-C; flush."""
    if not rate >= 0:
        raise ConfigError(f"rate must be >= 0 events per second, got {rate}")
    if count is not None and count < 1:
        raise ConfigError(f"count must be >= 1 event, got {count}")
    name = topic or settings.topics.bookstore
    ensure_topics(settings, [name])
    books = [
        b.book_id for b in catalogue(settings.bookstore.books, settings.bookstore.catalogue_seed)
    ]
    producer = make_producer(settings)
    stats = BookstoreStats(topic=name)
    stop = stop or threading.Event()
    began = time.monotonic()
    events = visitors(books, seed, lambda: int(time.time() * 1000))
    try:
        while not stop.is_set() and (count is None or stats.sent < count):
            due = int((time.monotonic() - began) * rate) + 1 if rate else 1000
            due = min(due - stats.sent if rate else due, (count or 10**18) - stats.sent)
            for _ in range(max(due, 0)):
                event = next(events)
                producer.produce(name, encode(event), event.user_id.encode())
                stats.sent += 1
                stats.by_type[event.event_type] = stats.by_type.get(event.event_type, 0) + 1
            producer.poll(0)
            if progress is not None:
                progress(stats)
            if rate and due <= 0:
                stop.wait(CHUNK_S)
    except KeyboardInterrupt:
        stats.interrupted = True
    stats.delivered = producer.flush().delivered
    stats.elapsed_s = time.monotonic() - began
    stats.interrupted = stats.interrupted or stop.is_set()
    return stats
