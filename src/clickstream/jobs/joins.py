"""Users joined to their page events (the stream-joins scenario, seed 003).

Three queries, each with its own checkpoint:

* ``users``: validates the users topic (the seed's JSON Schema, see
  :mod:`clickstream.events.joins`), dead-letters bad records, keeps each user's newest details
  (``join_users``).
* ``events``: validates the page-event topic, dead-letters bad records, adds every valid event
  to ``event_type_counts`` (once per micro-batch, however often a batch is replayed).
* ``join``: a Spark stream-stream left outer join of valid page events with valid users on
  ``user_id``, watermarks on both sides (``joins.watermark_s``), matching a user whose event
  time is within ``joins.match_bound_s`` of the event's, before or after it. A matched event is
  added to its user's ``event_count`` once, by its record's key; an event that found no user
  once the watermark passed the bound is kept in ``unmatched_events``.

Totals go to the warehouse (:mod:`clickstream.sinks.join_tables`) and to the result topic
(metrics ``joins.user_events`` keyed ``user_id<TAB>name<TAB>email``, ``joins.event_types``
keyed by event, ``joins.unmatched`` keyed ``all``; totals: ``window_start`` is 0 and
``window_end`` the time of writing) for the
dashboard's two panels.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.events.joins import MAX_CHARS, PageEvent, User, fields
from clickstream.events.results import WindowCount, record_key
from clickstream.jobs import checkpoint
from clickstream.jobs.checkpoint import Store
from clickstream.jobs.parse import dead_letter_key, dead_letter_value
from clickstream.jobs.spec import JobSpec, QuerySpec
from clickstream.jobs.string_fields import parse_string_fields
from clickstream.settings import Settings
from clickstream.sinks.join_tables import JoinTables
from clickstream.sinks.kafka_topic import DriverKafkaSink
from clickstream.spark.io import read_kafka

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NAME = "joins"
KEY_SHIFT = 1 << 40
"""An event's key: partition * 2**40 + offset of its record (offsets stay below 2**40)."""
USER_EVENTS = "joins.user_events"
EVENT_TYPES = "joins.event_types"
UNMATCHED = "joins.unmatched"


def event_time() -> Column:
    return F.try_to_timestamp(F.col("event_timestamp"))


def parse(raw: DataFrame, kind: type[User] | type[PageEvent], settings: Settings) -> DataFrame:
    """Records of ``kind`` checked against its schema, with ``_time`` (the event time) and the
    dead-letter columns ``_dead_key``/``_dead_value`` (null for good records)."""
    ahead = settings.jobs.max_future_s
    checks = [
        (event_time().isNull(), "field event_timestamp is not a time (yyyy-MM-dd HH:mm:ss)"),
        (
            event_time() > F.col("_kafka_timestamp") + F.expr(f"INTERVAL {ahead} SECONDS"),
            f"field event_timestamp is more than {ahead} s ahead of its arrival in Kafka",
        ),
    ]
    parsed = parse_string_fields(raw, fields(kind), MAX_CHARS, checks)
    bad = F.col("reason").isNotNull()
    return parsed.select(
        "*",
        F.when(~bad, event_time()).alias("_time"),
        F.when(bad, dead_letter_key()).alias("_dead_key"),
        F.when(bad, dead_letter_value()).alias("_dead_value"),
    )


def _read(spark: SparkSession, topic: str, settings: Settings, starting: str) -> DataFrame:
    return read_kafka(
        spark,
        topic,
        settings=settings,
        starting_offsets=starting,
        max_offsets_per_trigger=settings.joins.max_offsets_per_trigger,
    )


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    joins = settings.joins
    tables = JoinTables(
        settings.duckdb_path,
        settings.warehouse.lock_timeout_s,
        keep_keys_s=4 * (joins.watermark_s + joins.match_bound_s) + 60,
    )
    results = JoinResults(settings, tables)
    users = parse(_read(spark, joins.users_topic, settings, starting_offsets), User, settings)
    events = parse(
        _read(spark, joins.events_topic, settings, starting_offsets), PageEvent, settings
    )
    dead = ["_dead_key", "_dead_value"]
    events_location = checkpoint.query_location(settings, NAME, "events")
    users_query = QuerySpec(
        "users",
        users.select("user_id", "name", "email", "_time", "_partition", "_offset", *dead),
        UsersWriter(settings, tables, results),
        trigger_s=joins.trigger_s,
    )
    events_query = QuerySpec(
        "events",
        events.select("event", *dead),
        EventsWriter(settings, tables, results, checkpoint.store(events_location, spark)),
        trigger_s=joins.trigger_s,
    )
    join_query = QuerySpec(
        "join",
        join_frame(users, events, settings),
        JoinWriter(tables, results),
        trigger_s=joins.trigger_s,
    )
    return JobSpec(NAME, [join_query, events_query, users_query])


EVENT_COLUMNS = (
    "event_key",
    "user_id",
    "page",
    "event",
    "event_time",
    "source_topic",
    "source_partition",
    "source_offset",
)
"""A joined event's columns, as the join gives them and ``unmatched_events`` keeps them."""


def join_frame(users: DataFrame, events: DataFrame, settings: Settings) -> DataFrame:
    """Valid events left-outer-joined with valid users within the bound, one row per match (an
    event may match two versions of its user) or one unmatched row per event."""
    joins = settings.joins
    watermark = f"{joins.watermark_s} seconds"
    left = (
        events.where(F.col("reason").isNull())
        .select(
            (F.col("_partition").cast("long") * KEY_SHIFT + F.col("_offset")).alias("event_key"),
            "user_id",
            "page",
            "event",
            F.col("_time").alias("event_time"),
            F.col("_topic").alias("source_topic"),
            F.col("_partition").alias("source_partition"),
            F.col("_offset").alias("source_offset"),
        )
        .withWatermark("event_time", watermark)
    )
    right = (
        users.where(F.col("reason").isNull())
        .select(F.col("user_id").alias("u_user_id"), F.col("_time").alias("user_time"))
        .withWatermark("user_time", watermark)
    )
    bound = f"INTERVAL {joins.match_bound_s} SECONDS"
    condition = F.expr(
        f"user_id = u_user_id AND user_time >= event_time - {bound} "
        f"AND user_time <= event_time + {bound}"
    )
    joined = left.join(right, condition, "leftOuter")
    return joined.select(*EVENT_COLUMNS, F.col("u_user_id").isNotNull().alias("matched"))


def user_key(user_id: str, name: str | None, email: str | None) -> str:
    return "\t".join((user_id, name or "", email or ""))


class JoinResults:
    """Totals to the result topic, for the dashboard."""

    def __init__(self, settings: Settings, tables: JoinTables) -> None:
        self.topic = DriverKafkaSink(settings.topics.results, settings=settings)
        self.tables = tables

    def send(self, counts: list[tuple[str, str, int]]) -> None:
        if not counts:
            return
        encode = msgspec.json.encode
        now_ms = int(time.time() * 1000)  # totals: from the start of time until now
        self.topic.send(
            (
                record_key(metric, 0, key),
                encode(
                    WindowCount(metric=metric, window_start=0, window_end=now_ms, key=key, count=n)
                ),
            )
            for metric, key, n in counts
        )

    def users(self, totals: dict[str, int]) -> None:
        details = self.tables.user_details(list(totals))
        self.send(
            [
                (USER_EVENTS, user_key(uid, *details.get(uid, (None, None))), n)
                for uid, n in totals.items()
            ]
        )


def _dead_letters(sink: DriverKafkaSink, rows: pa.Table) -> None:
    dead = rows.filter(pc.is_valid(rows["_dead_value"]))
    if dead.num_rows:
        sink.send(zip(dead["_dead_key"].to_pylist(), dead["_dead_value"].to_pylist(), strict=True))


class UsersWriter:
    def __init__(self, settings: Settings, tables: JoinTables, results: JoinResults) -> None:
        self.tables = tables
        self.results = results
        self.dead = DriverKafkaSink(settings.topics.dead_letter, settings=settings)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.toArrow()
        _dead_letters(self.dead, rows)
        good = rows.filter(pc.is_valid(rows["_time"]))
        if not good.num_rows:
            return
        changed = self.tables.upsert_users(
            pa.table(
                {
                    "user_id": good["user_id"],
                    "name": good["name"],
                    "email": good["email"],
                    "updated_at": good["_time"],
                    "source_partition": pc.cast(good["_partition"], pa.int32()),
                    "source_offset": pc.cast(good["_offset"], pa.int64()),
                }
            )
        )
        totals = self.tables.totals([c[0] for c in changed])
        counts = []
        for uid, old_name, old_email, name, email in changed:
            if uid in totals:
                counts.append((USER_EVENTS, user_key(uid, old_name, old_email), 0))
                counts.append((USER_EVENTS, user_key(uid, name, email), totals[uid]))
        self.results.send(counts)


class EventsWriter:
    def __init__(
        self, settings: Settings, tables: JoinTables, results: JoinResults, query: Store
    ) -> None:
        self.tables = tables
        self.results = results
        self.dead = DriverKafkaSink(settings.topics.dead_letter, settings=settings)
        self.query = query

    def checkpoint_id(self) -> str:
        """The query's id, kept in its checkpoint: batch ids count from 0 again in a new one."""
        return checkpoint.query_id(self.query)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.toArrow()
        good = rows.filter(pc.is_null(rows["_dead_value"]))
        counts = {
            r["event"]: r["event_count"]
            for r in good.group_by("event").aggregate([("event", "count")]).to_pylist()
        }
        _dead_letters(self.dead, rows)  # first: a crash before the counts replays them
        totals = self.tables.add_event_types("events", self.checkpoint_id(), batch_id, counts)
        if totals is None:
            return  # added before a restart
        self.results.send([(EVENT_TYPES, event, n) for event, n in totals.items()])


class JoinWriter:
    def __init__(self, tables: JoinTables, results: JoinResults) -> None:
        self.tables = tables
        self.results = results

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.toArrow()
        if not rows.num_rows:
            return
        matched = rows.filter(rows["matched"])
        if matched.num_rows:
            totals = self.tables.add_matches(matched.select(["event_key", "user_id", "event_time"]))
            self.results.users(totals)
        unmatched = rows.filter(pc.invert(rows["matched"]))
        if unmatched.num_rows:
            kept = self.tables.add_unmatched(unmatched.select(list(EVENT_COLUMNS)))
            self.results.send([(UNMATCHED, "all", kept)])
