"""Windowed counts: what the count jobs write to the result topic and the warehouse, and what
the dashboard pushes to browsers.

A record is the count of events with one value (``key``) of one measure (``metric``) in one
window. Jobs run in update mode: a window's count is written again each micro-batch that adds
to it, so the newest record of a ``(metric, window_start, key)`` is the count so far, and the
last one the final count. The Kafka key is ``metric|window_start|key`` (a compacted topic
keeps just the final counts); the warehouse table ``window_counts`` is upserted on it.
"""

from __future__ import annotations

import msgspec
import pyarrow as pa

TABLE = "window_counts"


class WindowCount(msgspec.Struct, kw_only=True, omit_defaults=True):
    metric: str
    """What is counted, e.g. ``shop.gender`` or ``web.pages``."""
    window_start: int
    """Epoch milliseconds, inclusive."""
    window_end: int
    """Epoch milliseconds, exclusive."""
    key: str
    """The counted value, e.g. ``female`` or ``/pricing``."""
    count: int
    newest_event_ms: int | None = None
    """The newest event time the job had counted when it wrote this (epoch ms): how fresh the
    data behind the count is. None where the job does not know it."""
    written_ms: int | None = None
    """When the count was written to the result topic (epoch ms)."""


def later(a: int | None, b: int | None) -> int | None:
    """The later of two optional times (``newest_event_ms``, ``written_ms``)."""
    return b if a is None else a if b is None else max(a, b)


def record_key(metric: str, window_start: int, key: str) -> str:
    return f"{metric}|{window_start}|{key}"


COUNTS = pa.schema(
    [
        ("metric", pa.string()),
        ("window_start", pa.int64()),
        ("window_end", pa.int64()),
        ("key", pa.string()),
        ("count", pa.int64()),
        ("newest_event_ms", pa.int64()),
    ]
)
"""Counts as Arrow rows: what a count writer hands the result sink (``newest_event_ms`` may be
null, or left out)."""


def counts_table(counts: list[WindowCount]) -> pa.Table:
    """``counts`` as :data:`COUNTS` rows (column by column: a dict per row costs 3 µs, which
    the joins' tens of thousands of totals per batch feel)."""
    return pa.table(
        [
            [c.metric for c in counts],
            [c.window_start for c in counts],
            [c.window_end for c in counts],
            [c.key for c in counts],
            [c.count for c in counts],
            [c.newest_event_ms for c in counts],
        ],
        schema=COUNTS,
    )


# The metrics of the built-in jobs, and what their keys are.
METRICS = {
    "shop.gender": "shoppers per second by gender: female, male, unknown",
    "shop.action": "shop events per second by action: click, cart, purchase, favourite",
    "web.pageviews": "web events per second by kind: Pageview, PagePing, Custom",
    "web.pages": "pageviews per second by page path",
    "web.referrers": "pageviews per second by referrer (direct for none or internal)",
    "web.active_sessions": "distinct sessions with a hit in the last 5 minutes (key: all)",
    "web.countries": "pageviews per second by country (ISO code; unknown)",
    "web.bots": "events of bots per second by kind of reason: crawler, headless browser, ...",
    "bookstore.opens": "description opens per minute by book id",
    "bookstore.purchases": "purchases per minute by book id",
    "songs.minute": "song plays per minute by artist/song_name",
    "songs.hour": "song plays per hour by artist/song_name",
    "songs.all": "song plays of all time by artist/song_name (window_start 0)",
    "joins.user_events": "events per user, all time (key: user_id, name, email, tab-separated)",
    "joins.event_types": "page events per type, all time",
    "joins.unmatched": "page events whose user has not arrived (key: all)",
}
