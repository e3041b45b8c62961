"""The bookstore job (seed 002): every event into the event store, and live per-book figures.

Reads ``topics.bookstore`` (``bookstore_events``), checks each record against
:class:`~clickstream.events.bookstore.BookstoreEvent` (bad ones go to the dead-letter topic with
the reason), and runs two queries over the one parse:

* ``events``: every good event into the event store, upserted on ``event_id``: Cassandra
  (``bookstore.events``) when ``cassandra.contact_points`` is set, else the warehouse table
  ``bookstore_events`` with the same columns. A replayed micro-batch rewrites the same rows.
* ``counts``: per book, in 1-minute windows of event time, the description opens
  (``bookstore.opens``) and the purchases (``bookstore.purchases``), to the result topic and
  ``window_counts``; the dashboard divides them for the conversion. An event counts once per
  ``event_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.events.bookstore import EVENT_TYPES, REQUIRED, TABLE, UUID_PATTERN, BookstoreEvent
from clickstream.settings import Settings
from clickstream.sinks.base import Sink, fan_out
from clickstream.sinks.duckdb_table import DuckDBTable
from clickstream.spark.io import read_kafka
from clickstream.streaming.counts import Measure, Windows, live_counts
from clickstream.streaming.parse import good, parse_json, time_checks
from clickstream.streaming.spec import JobSpec, QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

NAME = "bookstore"
WINDOW_S = 60
EVENT_COLUMNS = (
    '"event_id" UUID, "event_type" VARCHAR, "event_time" TIMESTAMPTZ, '
    '"user_id" VARCHAR, "book_id" VARCHAR'
)


def measures() -> list[Measure]:
    kind = F.col("event_type")
    return [
        Measure("bookstore.opens", F.when(kind == "description_open", F.col("book_id"))),
        Measure("bookstore.purchases", F.when(kind == "purchase", F.col("book_id"))),
    ]


def parse(raw: DataFrame, settings: Settings) -> DataFrame:
    checks = [
        (~F.col("event_id").rlike(UUID_PATTERN), "field event_id must be a UUID"),
        (
            ~F.col("event_type").isin(*EVENT_TYPES),
            f"field event_type must be one of {', '.join(EVENT_TYPES)}",
        ),
        *time_checks(["event_time"], settings.jobs.max_future_s),
    ]
    return parse_json(raw, BookstoreEvent, REQUIRED, checks)


def event_store(settings: Settings) -> Sink:
    """Cassandra when configured, else the warehouse table."""
    if settings.cassandra.configured:
        from clickstream.sinks.cassandra import CassandraEvents

        return CassandraEvents.from_settings(settings)
    return DuckDBTable.from_settings(settings, TABLE, key="event_id", columns=EVENT_COLUMNS)


def events(parsed: DataFrame) -> DataFrame:
    """The good events with the event store's columns (``event_time`` a timestamp)."""
    return good(parsed).select(
        "event_id",
        "event_type",
        F.timestamp_millis("event_time").alias("event_time"),
        "user_id",
        "book_id",
    )


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    raw = read_kafka(
        spark,
        settings.topics.bookstore,
        settings=settings,
        starting_offsets=starting_offsets,
    )
    parsed = parse(raw, settings)
    windows = Windows(WINDOW_S, None, settings.jobs.count_watermark_s)
    counts = live_counts(
        parsed,
        F.col("event_time"),
        measures(),
        windows,
        settings,
        job=NAME,
        event_id=F.col("event_id"),
    )
    store = QuerySpec("events", events(parsed), fan_out(event_store(settings)))
    return JobSpec(NAME, [store, counts])
