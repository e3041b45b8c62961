"""Users and their page events (the stream-joins scenario, seed 003).

Two kinds of record, each described by the seed's draft-07 JSON Schema, kept as files in
``events/schemas/`` (:func:`schema`):

* :class:`User` on the users topic (``CorpAppsTopic``): ``event_timestamp, user_id, email, name``.
* :class:`PageEvent` on the page-event topic (``test``): ``event_timestamp, user_id, page,
  event``, with ``event`` one of :data:`EVENTS` when the simulator makes it.

The schemas ask for an object whose four fields are JSON strings. The jobs accept exactly that
(``tests/events/test_join_contract.py`` compares them with the ``jsonschema`` library), plus
two rules of their own, because a join on event time needs them: ``event_timestamp`` must be a
time (``2026-11-29 12:00:00`` as the seed writes it, in UTC, or ISO 8601), and each field is at
most :data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from typing import Annotated, Any

import msgspec

MAX_CHARS = 1024
"""Longest field the jobs accept (the schemas set no bound)."""
EVENTS = ("click", "scroll", "submit", "download", "focus")
"""The page events the seed's App2 makes."""
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""``event_timestamp`` as the seed writes it."""

Text = Annotated[str, msgspec.Meta(max_length=MAX_CHARS)]


class User(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    event_timestamp: Text
    user_id: Text
    email: Text
    name: Text


class PageEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    event_timestamp: Text
    user_id: Text
    page: Text
    event: Text


SCHEMA_FILES: dict[type[msgspec.Struct], str] = {
    User: "users.schema.json",
    PageEvent: "page_events.schema.json",
}


@cache
def schema(kind: type[User] | type[PageEvent]) -> dict[str, Any]:
    """The seed's JSON Schema of ``kind``."""
    path = resources.files("clickstream.events").joinpath("schemas", SCHEMA_FILES[kind])
    return dict(json.loads(path.read_text()))


def fields(kind: type[User] | type[PageEvent]) -> list[str]:
    """The required string fields of ``kind``, in the schema's order."""
    return list(schema(kind)["required"])


def user_id_of(email: str) -> str:
    """A user's id, derived from the email: the same in every process and on every machine
    (Python's ``hash()`` is salted per process). The first 8 bytes of BLAKE2b of the
    lower-cased, stripped email, as a signed decimal like the seed's ``str(hash(email))``."""
    digest = hashlib.blake2b(email.strip().lower().encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big", signed=True))
