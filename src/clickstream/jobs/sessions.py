"""Sessionization (the web analytics scenario).

Pageviews from the web topic are grouped per (visitor id, session id) into session windows
that close after ``jobs.session_gap_s`` of inactivity, with a watermark of
``jobs.watermark_s`` for late events. Each session row has its pages in order, referrers,
landing-page codes, hit timestamps, pageview count, start, end, duration, entry and exit page.
Sessions go to files written by the executors (Parquet, which the warehouse loads; or Avro,
``files.format``) and the warehouse ``sessions`` table, keyed by ``session_key`` so a replayed
micro-batch replaces rather than adds. Records that do not parse go to the dead-letter topic,
from the same query: the topic is read and parsed once, and sessions and dead letters come
from one shuffle (:func:`~clickstream.streaming.parse.split_once`).

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
from clickstream.sinks.parquet_files import ParquetFilesSink
from clickstream.spark.io import read_kafka
from clickstream.streaming.parse import (
    dead_letter,
    parse_json,
    split_once,
    time_checks,
    with_dead_letters,
    written_as_text,
)
from clickstream.streaming.spec import JobSpec, QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

NAME = "sessions"
log = logging.getLogger(__name__)
REQUIRED = ["timestamp", "uiud", "sessionId", "pageUrl"]


def hits(parsed: DataFrame, watermark_s: int) -> DataFrame:
    """Parsed rows (:func:`parse`) -> pageview hits (uiud, sessionId, eventId, ts, pageUrl,
    referrer, landingPage, bot, country) with the watermark, and each bad record's dead letter
    (:data:`~clickstream.streaming.parse.DEAD`; its hit fields are not used). Rows of other
    event types are left out."""
    bad = F.col("reason").isNotNull()
    pageview = F.coalesce(F.col("eventType"), F.lit("Pageview")) == "Pageview"
    return (
        parsed.where(bad | pageview)
        .select(
            "uiud",
            "sessionId",
            "eventId",
            # A bad record has no event time: its time (perhaps far ahead, the reason it is
            # bad) must not move the watermark.
            F.when(~bad, F.timestamp_millis("timestamp")).alias("ts"),
            "pageUrl",
            # The contract's defaults for what a producer left out: no array of a session
            # holds a null (BigQuery refuses one).
            F.coalesce(F.col("referrer"), F.lit("direct")).alias("referrer"),
            F.coalesce(F.col("landingPage").cast("int"), F.lit(0)).alias("landingPage"),
            F.coalesce(F.col("bot"), F.lit(False)).alias("bot"),
            "country",
            dead_letter(),
        )
        .withWatermark("ts", f"{watermark_s} seconds")
    )


def sessionize(hits: DataFrame, gap_s: int) -> DataFrame:
    """Good pageview hits (:func:`hits`) -> one row per session."""
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
    """Where sessions go: Parquet files written by the executors, which the warehouse table
    loads; or, with ``files.format`` ``avro`` or BigQuery as the warehouse
    (``warehouse.bigquery_project``), Avro files, the warehouse table, and BigQuery. BigQuery
    loads the Avro files from Cloud Storage, so with a ``files.url`` that is not ``gs://`` the
    BigQuery load is left out with one warning (the other jobs' BigQuery tables need no files,
    and still load)."""
    if settings.files.format == "parquet" and not settings.warehouse.bigquery_project:
        parquet = ParquetFilesSink.from_settings(settings, "sessions")
        table = DuckDBTable.from_settings(settings, "sessions", "session_key", files=parquet)
        return [parquet, table]
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
    # One read and parse for sessions and dead letters: both come from one shuffle on the
    # session's keys, which the session windows then need no other (see split_once).
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions") or "1")
    good_hits, dead = split_once(
        hits(parse(raw, settings), settings.jobs.watermark_s), ["uiud", "sessionId"], partitions
    )
    sessions = sessionize(good_hits, settings.jobs.session_gap_s)
    write = with_dead_letters(fan_out(*sinks(settings), cached=True), settings)
    return JobSpec(
        NAME,
        [
            QuerySpec(
                "sessions",
                sessions.unionByName(dead, allowMissingColumns=True),
                write,
                output_mode="append",
            )
        ],
    )
