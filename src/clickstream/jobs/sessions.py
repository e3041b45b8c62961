"""Sessionization (the web analytics scenario).

Pageviews from the web topic are grouped per (visitor id, session id) into session windows
that close after ``jobs.session_gap_s`` of inactivity, with a watermark of
``jobs.watermark_s`` for late events. Each session row has its pages in order, referrers,
landing-page codes, hit timestamps, pageview count, start, end, duration, entry and exit page.
Sessions go to Avro files and the warehouse ``sessions`` table, keyed by ``session_key`` so a
replayed micro-batch replaces rather than adds. Records that do not parse go to the
dead-letter topic.

In append mode a session is written once the watermark passes its end: the newest sessions
stay in Spark's state until later events arrive. Events later than the watermark are dropped
by Spark; the job reports how many (``numRowsDroppedByWatermark``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.events.web import TEXT_INTEGERS, TEXT_TIMES, EnrichedWebEvent
from clickstream.settings import Settings
from clickstream.sinks.avro_files import AvroFilesSink
from clickstream.sinks.base import Sink, fan_out
from clickstream.sinks.duckdb_table import DuckDBTable
from clickstream.spark.io import read_kafka
from clickstream.streaming.parse import (
    dead_letter_query,
    good,
    parse_json,
    time_checks,
    written_as_text,
)
from clickstream.streaming.spec import JobSpec, QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

NAME = "sessions"
log = logging.getLogger(__name__)
REQUIRED = ["timestamp", "uiud", "sessionId", "pageUrl"]


def sessionize(events: DataFrame, watermark_s: int, gap_s: int) -> DataFrame:
    """Pageview rows (uiud, sessionId, timestamp ms, pageUrl, referrer, landingPage, eventId)
    -> one row per session."""
    hits = (
        events.where(F.coalesce(F.col("eventType"), F.lit("Pageview")) == "Pageview")
        .select(
            "uiud",
            "sessionId",
            "eventId",
            F.timestamp_millis("timestamp").alias("ts"),
            "pageUrl",
            # The contract's defaults for what a producer left out: no array of a session
            # holds a null (BigQuery refuses one).
            F.coalesce(F.col("referrer"), F.lit("direct")).alias("referrer"),
            F.coalesce(F.col("landingPage").cast("int"), F.lit(0)).alias("landingPage"),
            F.coalesce(F.col("bot"), F.lit(False)).alias("bot"),
            "country",
        )
        .withWatermark("ts", f"{watermark_s} seconds")
    )
    grouped = hits.groupBy("uiud", "sessionId", F.session_window("ts", f"{gap_s} seconds")).agg(
        F.array_sort(
            F.collect_list(
                F.struct("ts", "pageUrl", "referrer", "landingPage", "eventId", "bot", "country")
            )
        ).alias("hits"),
        F.min("ts").alias("session_start"),
        F.max("ts").alias("session_end"),
    )
    # A retried event (same eventId) counts once.
    hits_col = F.expr(
        "filter(hits, (h, i) -> i = 0 OR h.eventId IS NULL OR h.eventId != hits[i - 1].eventId)"
    )
    return grouped.select(
        F.sha2(
            F.concat_ws(
                "|", "uiud", "sessionId", F.col("session_start").cast("long").cast("string")
            ),
            256,
        ).alias("session_key"),
        F.col("uiud").alias("visitor_id"),
        F.col("sessionId").alias("session_id"),
        hits_col.alias("hits"),
        "session_start",
        "session_end",
    ).select(
        "session_key",
        "visitor_id",
        "session_id",
        # pageUrl and ts are never null (required fields): array_compact says so to the schema,
        # so the Avro files get arrays of plain strings and timestamps (referrers and landing
        # codes are not null either, see above).
        F.array_compact("hits.pageUrl").alias("pages"),
        F.col("hits.referrer").alias("referrers"),
        F.col("hits.landingPage").alias("landing_page_codes"),
        F.array_compact("hits.ts").alias("hit_timestamps"),
        F.size("hits").cast("long").alias("pageviews"),
        "session_start",
        "session_end",
        (F.unix_millis("session_end") - F.unix_millis("session_start")).alias("duration_ms"),
        F.element_at("hits.pageUrl", 1).alias("entry_page"),
        F.element_at("hits.pageUrl", -1).alias("exit_page"),
        F.element_at("hits.referrer", 1).alias("referrer"),
        # A session with any hit the collector labelled a bot's is a bot's.
        F.exists("hits", lambda hit: hit["bot"]).alias("bot"),
        F.element_at("hits.country", 1).alias("country"),
    )


def parse(raw: DataFrame, settings: Settings) -> DataFrame:
    """Pageview records, checked: the event time drives the watermark, so a far-future one is
    dead-lettered (:func:`~clickstream.streaming.parse.time_checks`). Records as seed 000's API
    wrote them (every field a string, ``timestamp`` a local time ``2026-12-06 10:00:00`` in
    ``jobs.source_timezone``) are read too."""
    checks = time_checks(["timestamp", "receivedAt"], settings.jobs.max_future_s)
    texts = written_as_text(TEXT_TIMES, TEXT_INTEGERS, settings.jobs.source_timezone)
    return parse_json(raw, EnrichedWebEvent, REQUIRED, checks, from_text=texts)


def sinks(settings: Settings) -> list[Sink]:
    """Where sessions go: Avro files, the warehouse table, and BigQuery when
    ``warehouse.bigquery_project`` is set. BigQuery loads the Avro files from Cloud Storage, so
    with a ``files.url`` that is not ``gs://`` the BigQuery load is left out with one warning
    (the other jobs' BigQuery tables need no files, and still load)."""
    files = AvroFilesSink.from_settings(settings, "sessions")
    found: list[Sink] = [files, DuckDBTable.from_settings(settings, "sessions", key="session_key")]
    if not settings.warehouse.bigquery_project:
        return found
    if not files.url.startswith("gs://"):
        log.warning(
            "sessions are not loaded into BigQuery: it loads them from Cloud Storage, and "
            "files.url (%s) is not a gs:// URL (set CLICKSTREAM_FILES_URL=gs://bucket/path)",
            files.url,
        )
        return found
    from clickstream.sinks.bigquery import BigQuerySessions

    return [*found, BigQuerySessions(settings, files)]


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    raw = read_kafka(
        spark, settings.topics.web_events, settings=settings, starting_offsets=starting_offsets
    )
    parsed = parse(raw, settings)
    sessions = sessionize(good(parsed), settings.jobs.watermark_s, settings.jobs.session_gap_s)
    return JobSpec(
        NAME,
        [
            QuerySpec("sessions", sessions, fan_out(*sinks(settings)), output_mode="append"),
            dead_letter_query(parsed, settings, "sessions-dead-letter"),
        ],
    )
