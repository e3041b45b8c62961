"""Bookstore events (the seed's bookstore): a visitor opens or closes a book's description, or
buys the book.

One record per event on ``topics.bookstore`` (``bookstore_events``), JSON::

    {"event_id": "0b5c...-uuid", "event_type": "purchase", "event_time": 1764453600123,
     "user_id": "u-42", "book_id": "b-0007"}

``event_time`` is epoch milliseconds. The event store (Cassandra ``bookstore.events``, or the
warehouse table ``bookstore_events``) keeps the seed's columns: ``event_id uuid PRIMARY KEY,
event_type text, event_time timestamp, user_id text, book_id text``; a record written twice
(a replay, a client's retry) is the same row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

EventType = Literal["description_open", "description_close", "purchase"]
EVENT_TYPES: tuple[str, ...] = ("description_open", "description_close", "purchase")
Millis = Annotated[int, msgspec.Meta(ge=0, le=32_503_680_000_000)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Uuid = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN, max_length=36)]

TABLE = "bookstore_events"
"""The warehouse table of the events (the event store when no Cassandra is configured)."""
REQUIRED = ["event_id", "event_type", "event_time", "user_id", "book_id"]


class BookstoreEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    event_id: Uuid
    event_type: EventType
    event_time: Millis
    """Epoch milliseconds."""
    user_id: Text
    book_id: Text


def new_event(event_type: str, user_id: str, book_id: str, event_time_ms: int) -> BookstoreEvent:
    """An event with a fresh random id."""
    return BookstoreEvent(
        event_id=str(uuid.uuid4()),
        event_type=event_type,  # type: ignore[arg-type]
        event_time=event_time_ms,
        user_id=user_id,
        book_id=book_id,
    )


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(BookstoreEvent).decode


TRACKED = ("description_open", "description_close")
"""Browser events: a page's tracker sends them to the collector as custom events
(``clickstream.track("description_open", {book_id: "b-0007"})``)."""


def from_tracker(
    event_id: str, name: str | None, props: Mapping[str, object] | None, uiud: str, time_ms: int
) -> BookstoreEvent | None:
    """The bookstore event a tracker's custom event stands for, or None when it is another."""
    if name not in TRACKED or not props:
        return None
    book = props.get("book_id")
    if not isinstance(book, str) or not 1 <= len(book) <= 64 or not 1 <= len(uiud) <= 64:
        return None
    try:
        key = str(uuid.UUID(event_id))
    except ValueError:  # an id that is not a UUID (the seed's payload): a stable one from it
        key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"clickstream:{event_id}"))
    kind: EventType = "description_open" if name == "description_open" else "description_close"
    return BookstoreEvent(
        event_id=key, event_type=kind, event_time=time_ms, user_id=uiud, book_id=book
    )
