"""Web analytics events, as the tracker (and the seed's snippet) send them.

Field names are the seed's camelCase (``timestamp`` in epoch milliseconds, ``uiud``,
``sessionId``, ``landingPage``...) so a site already running the seed's snippet only changes the
collector URL. Three kinds, told apart by ``eventType``:

* ``Pageview``: a page (or a single-page-app route) was shown.
* ``PagePing``: the page is still visible and the user active; ``engagedMs`` since the last one.
* ``Custom``: ``track(name, props)`` from the page.

The collector decodes with these types (lax: ``"1"`` is accepted for ``1``), enriches, and
produces an :class:`EnrichedWebEvent` to the topic of the kind.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=32_503_680_000_000)]  # before year 3000
PropValue = str | int | float | bool | None


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    timestamp: Millis
    """When it happened on the client, epoch milliseconds."""
    uiud: Id
    """Visitor id: a UUID v4 kept in localStorage."""
    sessionId: Id | int
    """Session id: kept in a cookie that expires after 30 minutes of inactivity."""
    pageUrl: NonEmpty
    eventId: Id | None = None
    """Client-side id; retries of the same event carry the same one."""


class Pageview(_Base, tag="Pageview", tag_field="eventType"):
    lastPageVisited: str = ""
    pageTitle: str = ""
    landingPage: Annotated[int, msgspec.Meta(ge=0, le=1)] = 0
    referrer: str = "direct"


class PagePing(_Base, tag="PagePing", tag_field="eventType"):
    engagedMs: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]


class Custom(_Base, tag="Custom", tag_field="eventType"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    props: dict[str, PropValue] = {}


WebEvent = Pageview | PagePing | Custom


class EnrichedWebEvent(msgspec.Struct, kw_only=True, omit_defaults=False):
    """What lands in Kafka: the event's own fields plus what the collector knows."""

    eventId: str
    eventType: Literal["Pageview", "PagePing", "Custom"]
    timestamp: int
    receivedAt: int
    uiud: str
    sessionId: str
    pageUrl: str
    lastPageVisited: str | None = None
    pageTitle: str | None = None
    landingPage: int | None = None
    referrer: str | None = None
    engagedMs: int | None = None
    name: str | None = None
    props: dict[str, PropValue] | None = None
    site: str | None = None
    ip: str | None = None
    userAgent: str | None = None
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    isBot: bool = False
    utmSource: str | None = None
    utmMedium: str | None = None
    utmCampaign: str | None = None
    utmTerm: str | None = None
    utmContent: str | None = None


def spark_ddl(struct: type[msgspec.Struct]) -> str:
    """The Spark schema (DDL) of a struct's fields, so jobs parse with the same contract."""
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
        columns.append(f"`{field.encode_name}` {ddl}")
    return ", ".join(columns)


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
