"""Live web counts (the web scenario's dashboard panels): events per second by kind, pageviews
per second by page and by referrer, and active sessions.

Reads the three web topics (pageviews, page pings, custom events) and counts on the
collector's receive time (``receivedAt``: the dashboard shows what happens now, whatever the
visitors' clocks say), in windows of ``jobs.count_window_s``:

* ``web.pageviews``: events by kind (``Pageview``, ``PagePing``, ``Custom``);
* ``web.pages``: pageviews by page path;
* ``web.referrers``: pageviews by referrer host (``direct`` when none or internal);
* ``web.active_sessions``: distinct (visitor, session) pairs with a hit in the last 5 minutes,
  a sliding window that moves every 10 s (approximate: HyperLogLog, within ~2%), each with the
  window's newest hit as its ``newest_event_ms``;
* ``web.countries``: pageviews per second by the visitor's country (ISO code, ``unknown``);
* ``web.bots``: events the collector labelled a bot's, by the kind of reason (``crawler``,
  ``headless browser``, ``datacenter network``, ``no user agent``). The other metrics count
  humans only, unless ``jobs.count_bots`` is set.

An event counts once: a client's retry of an event already stored has the same ``eventId``
and is not counted again (within ``jobs.dedup_s``). Malformed pageviews are dead-lettered by
the ``sessions`` job; this job dead-letters those of the ping and custom topics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.events.web import TEXT_INTEGERS, TEXT_TIMES, EnrichedWebEvent
from clickstream.settings import Settings
from clickstream.sinks.results_topic import ResultsTopic
from clickstream.spark.io import read_kafka
from clickstream.streaming import checkpoint
from clickstream.streaming.counts import (
    Measure,
    Windows,
    live_counts,
)
from clickstream.streaming.distinct import keeps_newest, window_distinct
from clickstream.streaming.parse import good, parse_json, time_checks, written_as_text
from clickstream.streaming.spec import JobSpec, QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

NAME = "web-live"
REQUIRED = ["eventType", "uiud", "sessionId", "pageUrl"]
ACTIVE = Windows(size_s=300, slide_s=10)
ACTIVE_QUERY = "active-sessions"


def measures(count_bots: bool = False) -> list[Measure]:
    """Humans' events in the panels' metrics (everyone's with ``count_bots``); bots' in
    ``web.bots``, by the kind of their reason (``crawler``, ``headless browser``,
    ``datacenter network``, ``no user agent``)."""
    bot = F.coalesce(F.col("bot"), F.lit(False))
    human = F.lit(True) if count_bots else ~bot
    pageview = (F.col("eventType") == "Pageview") & human
    path = F.coalesce(F.nullif(F.parse_url("pageUrl", F.lit("PATH")), F.lit("")), F.lit("/"))
    referrer = F.coalesce(
        F.parse_url("referrer", F.lit("HOST")),
        F.nullif(F.col("referrer"), F.lit("")),
        F.lit("direct"),
    )
    return [
        Measure("web.pageviews", F.when(human, F.col("eventType"))),
        Measure(
            "web.bots",
            F.when(bot, F.coalesce(F.split(F.col("botReason"), ":").getItem(0), F.lit("bot"))),
        ),
        Measure("web.pages", F.when(pageview, path)),
        Measure("web.referrers", F.when(pageview, referrer)),
        Measure("web.countries", F.when(pageview, F.coalesce(F.col("country"), F.lit("unknown")))),
    ]


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    topics = settings.topics
    names = [topics.web_events, topics.web_pings, topics.web_custom]
    parsed = parse_json(
        read_kafka(
            spark,
            names,
            settings=settings,
            starting_offsets=starting_offsets,
        ),
        EnrichedWebEvent,
        REQUIRED,
        time_checks(["timestamp", "receivedAt"], settings.jobs.max_future_s),
        from_text=written_as_text(TEXT_TIMES, TEXT_INTEGERS, settings.jobs.source_timezone),
    ).withColumn(
        # Sent straight to Kafka, not through the collector (seed 000's API): when it arrived.
        "receivedAt",
        F.coalesce(F.col("receivedAt"), F.unix_millis(F.col("_kafka_timestamp"))),
    )
    windows = Windows.from_settings(settings)
    counts = live_counts(
        parsed,
        F.col("receivedAt"),
        measures(settings.jobs.count_bots),
        windows,
        settings,
        job=NAME,
        dead_letters=F.col("_topic") != topics.web_events,
        event_id=F.col("eventId"),
    )
    events = good(parsed)
    if not settings.jobs.count_bots:
        events = events.where(~F.coalesce(F.col("bot"), F.lit(False)))
    events = events.withColumn("ts", F.timestamp_millis("receivedAt"))
    active = Windows(ACTIVE.size_s, ACTIVE.slide_s, windows.watermark_s)
    location = checkpoint.query_location(settings, NAME, ACTIVE_QUERY)
    return JobSpec(
        NAME,
        [
            counts,
            QuerySpec(
                ACTIVE_QUERY,
                window_distinct(
                    events,
                    "ts",
                    "web.active_sessions",
                    ["uiud", "sessionId"],
                    active,
                    newest=keeps_newest(checkpoint.store(location, spark)),
                ),
                ResultsTopic.from_settings(settings),
                "update",
                settings.jobs.trigger_s,  # the window moves every 10 s
            ),
        ],
    )
