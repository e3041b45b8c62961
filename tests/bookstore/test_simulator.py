"""``clickstream simulate bookstore``: believable visitors, straight to Kafka."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from clickstream.events.bookstore import BookstoreEvent
from clickstream.settings import Settings
from clickstream.simulators.bookstore import simulate_bookstore
from tests.conftest import read_topic

pytestmark = pytest.mark.slow


def test_simulated_visitors_open_close_and_sometimes_buy(settings: Settings) -> None:
    import msgspec

    topic = f"books-sim-{uuid.uuid4().hex[:8]}"
    stats = simulate_bookstore(settings, rate=0, count=3000, seed=7, topic=topic)
    assert (stats.sent, stats.delivered) == (3000, 3000)
    records: list[Any] = read_topic(settings, topic)
    events = [msgspec.convert(value, BookstoreEvent) for _, value in records]
    assert len(events) == 3000
    assert len({e.event_id for e in events}) == 3000
    kinds = Counter(e.event_type for e in events)
    assert kinds == stats.by_type
    # Most who open a description close it; a minority of openers buy.
    assert 0.7 < kinds["description_close"] / kinds["description_open"] < 0.95
    assert 0.05 < kinds["purchase"] / kinds["description_open"] < 0.2
    # A few books draw most of the traffic.
    books = Counter(e.book_id for e in events if e.event_type == "description_open")
    top, *_, bottom = [n for _, n in books.most_common()]
    assert top > 5 * bottom
    assert all(key == e.user_id.encode() for (key, _), e in zip(records, events, strict=True))
