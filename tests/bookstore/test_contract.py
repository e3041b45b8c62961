"""The bookstore contract, and which tracker events the collector turns into bookstore events."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from clickstream.bookstore.catalogue import catalogue
from clickstream.events.bookstore import BookstoreEvent, decode, encode, from_tracker

EVENT_ID = "0b5c2d4e-8f1a-4b3c-9d2e-1f0a2b3c4d5e"


def test_a_description_event_from_the_tracker_becomes_a_bookstore_event() -> None:
    event = from_tracker(EVENT_ID, "description_open", {"book_id": "b-0007"}, "visitor-1", 1000)
    assert event == BookstoreEvent(
        event_id=EVENT_ID,
        event_type="description_open",
        event_time=1000,
        user_id="visitor-1",
        book_id="b-0007",
    )
    assert decode(encode(event)) == event


def test_an_id_that_is_not_a_uuid_gets_a_stable_one() -> None:
    first = from_tracker("seed-abc", "description_close", {"book_id": "b-1"}, "v", 5)
    again = from_tracker("seed-abc", "description_close", {"book_id": "b-1"}, "v", 5)
    assert first is not None
    assert again is not None
    assert first.event_id == again.event_id
    assert uuid.UUID(first.event_id).version == 5


@pytest.mark.parametrize(
    ("name", "props"),
    [
        ("signup", {"book_id": "b-1"}),  # another custom event
        ("purchase", {"book_id": "b-1"}),  # purchases come from the server only
        ("description_open", {}),
        ("description_open", {"book_id": 7}),
        ("description_open", {"book_id": "x" * 65}),
        (None, None),
    ],
)
def test_other_custom_events_stay_custom_events(
    name: str | None, props: dict[str, object] | None
) -> None:
    assert from_tracker(EVENT_ID, name, props, "v", 1) is None


def test_the_contract_refuses_what_the_job_dead_letters() -> None:
    good = {"event_id": EVENT_ID, "event_type": "purchase", "event_time": 1, "user_id": "u",
            "book_id": "b"}  # fmt: skip
    assert decode(msgspec.json.encode(good)).event_type == "purchase"
    for field, value in [("event_id", "nope"), ("event_type", "wishlist"), ("event_time", -1)]:
        with pytest.raises(msgspec.ValidationError, match=field):
            decode(msgspec.json.encode({**good, field: value}))


def test_the_catalogue_is_the_same_for_the_same_seed() -> None:
    first, again, other = catalogue(30, 2), catalogue.__wrapped__(30, 2), catalogue(30, 3)
    assert first == again
    assert [b.book_id for b in first] == [f"b-{n:04d}" for n in range(1, 31)]
    assert [b.title for b in first] != [b.title for b in other]
    assert all(499 <= b.price_cents <= 4999 and b.description for b in first)
