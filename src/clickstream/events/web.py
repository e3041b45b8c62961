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


TEXT_TIMES = ("timestamp",)
"""Event times the jobs also read as a local time, ``2026-12-06 10:00:00`` (seed 000's API wrote
them so, in its host's time zone: ``jobs.source_timezone``)."""
TEXT_INTEGERS = ("landingPage",)
"""Integers the jobs also read from a string (seed 000's API sent every field as one)."""


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
    bot: bool = False
    """Labelled a bot by the collector (kept, not dropped: the jobs count bots apart)."""
    country: Annotated[str, msgspec.Meta(max_length=2)] | None = None
    """The client's country (ISO 3166 code), from its address before anonymising; None when
    unknown, private or local."""
    botReason: Label | None = None
    """Why: ``crawler: Googlebot\\/``, ``headless browser: HeadlessChrome``, ``datacenter
    network: 34.64.0.0/10``, ``no user agent``."""
    utmSource: Utm | None = None
    utmMedium: Utm | None = None
    utmCampaign: Utm | None = None
    utmTerm: Utm | None = None
    utmContent: Utm | None = None
