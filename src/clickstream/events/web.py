"""Web analytics events, as the tracker (and the seed's snippet) send them.

Field names are the seed's camelCase (``timestamp`` in epoch milliseconds, ``uiud``,
``sessionId``, ``landingPage``...) so a site already running the seed's snippet only changes the
collector URL. Three kinds, told apart by ``eventType``:

* ``Pageview``: a page (or a single-page-app route) was shown.
* ``PagePing``: the page is still visible and the user active; ``engagedMs`` since the last one.
* ``Custom``: ``track(name, props)`` from the page.

The collector decodes with these types (lax: ``"1"`` is accepted for ``1``), enriches, and
produces an :class:`EnrichedWebEvent` to the topic of the kind.

Every string has a maximum length (:data:`MAX_URL`, :data:`MAX_TEXT`...): the collector refuses
a longer one with 422 naming the field, and the jobs dead-letter a record from Kafka that breaks
a bound of :class:`EnrichedWebEvent`, so no field can grow a result key past what Kafka takes.
"""

from __future__ import annotations

import types
from typing import Annotated, Literal

import msgspec

MAX_URL = 4096
"""URLs: ``pageUrl``, ``lastPageVisited``, ``referrer`` (browsers and CDNs cut near 2-8 KB)."""
MAX_TEXT = 1024
"""Free text: ``pageTitle``, a custom event's string property values."""
MAX_ID = 128
"""Ids: ``uiud``, ``sessionId``, ``eventId``; a custom event's property names."""
MAX_NAME = 256
"""A custom event's ``name``."""
MAX_PROPS = 64
"""Properties of one custom event."""
MAX_USER_AGENT = 512
MAX_LABEL = 64
"""What the collector derives from headers and URLs: browser, OS, device, site, IP."""
MAX_UTM = 512

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=32_503_680_000_000)]  # before year 3000
PropValue = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | int | float | bool | None
Props = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=MAX_ID)], PropValue],
    msgspec.Meta(max_length=MAX_PROPS),
]
UrlOrEmpty = Annotated[str, msgspec.Meta(max_length=MAX_URL)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Label = Annotated[str, msgspec.Meta(max_length=MAX_LABEL)]
UserAgent = Annotated[str, msgspec.Meta(max_length=MAX_USER_AGENT)]
Utm = Annotated[str, msgspec.Meta(max_length=MAX_UTM)]


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    timestamp: Millis
    """When it happened on the client, epoch milliseconds."""
    uiud: Id
    """Visitor id: a UUID v4 kept in localStorage."""
    sessionId: Id | int
    """Session id: kept in a cookie that expires after 30 minutes of inactivity."""
    pageUrl: Url
    eventId: Id | None = None
    """Client-side id; retries of the same event carry the same one."""


class Pageview(_Base, tag="Pageview", tag_field="eventType"):
    lastPageVisited: UrlOrEmpty = ""
    pageTitle: Text = ""
    landingPage: Annotated[int, msgspec.Meta(ge=0, le=1)] = 0
    referrer: UrlOrEmpty = "direct"


class PagePing(_Base, tag="PagePing", tag_field="eventType"):
    engagedMs: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]


class Custom(_Base, tag="Custom", tag_field="eventType"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    props: Props = {}


WebEvent = Pageview | PagePing | Custom


class EnrichedWebEvent(msgspec.Struct, kw_only=True, omit_defaults=False):
    """What lands in Kafka: the event's own fields plus what the collector knows. The bounds
    are those the jobs enforce (:func:`string_limits`); the collector keeps within them."""

    eventId: Id
    eventType: Literal["Pageview", "PagePing", "Custom"]
    timestamp: Millis
    receivedAt: Millis
    uiud: Id
    sessionId: Id
    pageUrl: Url
    lastPageVisited: UrlOrEmpty | None = None
    pageTitle: Text | None = None
    landingPage: int | None = None
    referrer: UrlOrEmpty | None = None
    engagedMs: int | None = None
    name: Name | None = None
    props: Props | None = None
    site: Label | None = None
    ip: Label | None = None
    userAgent: UserAgent | None = None
    browser: Label | None = None
    os: Label | None = None
    device: Label | None = None
    isBot: bool = False
    utmSource: Utm | None = None
    utmMedium: Utm | None = None
    utmCampaign: Utm | None = None
    utmTerm: Utm | None = None
    utmContent: Utm | None = None


def spark_columns(struct: type[msgspec.Struct]) -> list[tuple[str, str]]:
    """(name, Spark type) of each field of a struct, so jobs parse with the same contract."""
    types = {
        int: "bigint",
        str: "string",
        bool: "boolean",
        float: "double",
    }
    columns = []
    for field in msgspec.structs.fields(struct):
        kind = _base_type(field.type)
        ddl = types.get(kind) if isinstance(kind, type) else None
        if ddl is None:
            ddl = "map<string,string>" if kind is dict else "string"
        columns.append((field.encode_name, ddl))
    return columns


def spark_ddl(struct: type[msgspec.Struct]) -> str:
    """The Spark schema (DDL) of a struct's fields (:func:`spark_columns`)."""
    return ", ".join(f"`{name}` {kind}" for name, kind in spark_columns(struct))


def _base_type(tp: object) -> object:
    """int for ``int | None``, ``Annotated[int, ...]``; dict for ``dict[...]``; str for Literal."""
    import typing

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _base_type(typing.get_args(tp)[0])
    if origin is Literal:
        return str
    if origin in (dict,):
        return dict
    if origin is not None:  # a union: the first non-None member
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(members[0]) if len(members) == 1 else str
    return tp


def string_limits(struct: type[msgspec.Struct]) -> dict[str, int]:
    """Each string field's maximum length (by its encoded name), as the contract bounds it."""
    limits = {}
    for field in msgspec.structs.fields(struct):
        bound = _max_length(field.type)
        if bound is not None:
            limits[field.encode_name] = bound
    return limits


def map_limits(struct: type[msgspec.Struct]) -> dict[str, tuple[int, int, int]]:
    """Each map field's bounds (entries, characters of a name, of a string value)."""
    limits = {}
    for field in msgspec.structs.fields(struct):
        if _base_type(field.type) is dict:
            limits[field.encode_name] = (MAX_PROPS, MAX_ID, MAX_TEXT)
    return limits


def _max_length(tp: object) -> int | None:
    import typing

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *metas = typing.get_args(tp)
        if base is str:
            return next((m.max_length for m in metas if isinstance(m, msgspec.Meta)), None)
        return None
    if origin in (typing.Union, types.UnionType):
        bounds = [b for b in map(_max_length, typing.get_args(tp)) if b is not None]
        return max(bounds) if bounds else None
    return None
