"""Users joined to their page events (the stream-joins scenario, seed 003).

One query (``all``) reads each topic once and parses each record once against the seed's
JSON Schema (see :mod:`clickstream.events.joins`), then sends everything through one Spark
stream-stream full outer join (:func:`join_frame`) of page events with users on ``user_id``,
watermarks on both sides (``joins.watermark_s``), matching a user whose event time is within
``joins.match_bound_s`` of the event's, before or after it. Out of the join come, per
micro-batch:

* every page event, at once: its type for ``event_type_counts`` (also when it is later than
  the watermark), or its dead letter;
* every user, at once: its details for ``join_users`` (the newest win), or its dead letter;
* each match of an event with a version of its user: the event is added to its user's
  ``event_count`` once, by its record's key;
* each event that found no user once the watermark passed the bound: kept in
  ``unmatched_events``.

A micro-batch goes to the warehouse in one transaction, once however often Spark replays it
(:mod:`clickstream.sinks.join_tables`), and its new totals to the result topic (metrics
``joins.user_events`` keyed ``user_id<TAB>name<TAB>email``, ``joins.event_types`` keyed by
event, ``joins.unmatched`` keyed ``all``; totals: ``window_start`` is 0 and ``window_end`` the
time of writing) for the dashboard's two panels.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.events.joins import MAX_CHARS, PageEvent, User, fields
from clickstream.events.results import WindowCount, counts_table
from clickstream.settings import Settings
from clickstream.sinks.join_tables import KEY_SHIFT, TABLES, BatchChange, JoinTables
from clickstream.sinks.kafka_topic import KafkaTopic
from clickstream.sinks.results_topic import ResultsTopic
from clickstream.spark.io import read_kafka
from clickstream.streaming import checkpoint
from clickstream.streaming.checkpoint import Store
from clickstream.streaming.parse import dead_letter_key, dead_letter_value
from clickstream.streaming.spec import JobSpec, QuerySpec
from clickstream.streaming.string_fields import parse_string_fields

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NAME = "joins"
QUERY = "all"
OLD_QUERIES = ("users", "events", "join")
"""The queries of versions before ``all``, each with its own checkpoint."""
USER_EVENTS = "joins.user_events"
EVENT_TYPES = "joins.event_types"
UNMATCHED = "joins.unmatched"
COUNT, KEEP, JOIN = "count", "keep", "join"
"""The roles of a record's copies in the join (see :func:`join_frame`)."""


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


def refuse_old_checkpoints(spark: SparkSession, settings: Settings) -> None:
    """Versions before this one ran three queries (``users``, ``events``, ``join``), each with
    its own checkpoint; the warehouse's totals were counted by them."""
    old = [
        q
        for q in OLD_QUERIES
        if checkpoint.store(checkpoint.query_location(settings, NAME, q), spark).exists("offsets")
    ]
    if old:
        folder = checkpoint.join(checkpoint.root(settings), NAME)
        raise ConfigError(
            f"the joins job's checkpoints in {folder} ({', '.join(old)}) were written by an "
            "earlier clickstream version, which read each topic in three queries; this one "
            "reads them in one. The warehouse's join totals were counted by those queries: "
            f"to count again, delete {folder} and the tables {', '.join(TABLES)} in "
            f"{settings.duckdb_path}"
        )


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    joins = settings.joins
    refuse_old_checkpoints(spark, settings)
    users = parse(_read(spark, joins.users_topic, settings, starting_offsets), User, settings)
    events = parse(
        _read(spark, joins.events_topic, settings, starting_offsets), PageEvent, settings
    )
    location = checkpoint.query_location(settings, NAME, QUERY)
    writer = JoinWriter(settings, checkpoint.store(location, spark))
    frame = join_frame(users, events, settings)
    return JobSpec(NAME, [QuerySpec(QUERY, frame, writer, trigger_s=joins.trigger_s)])


KEPT = {
    "name": "name",
    "email": "email",
    "_time": "updated_at",
    "_partition": "u_partition",
    "_offset": "u_offset",
    "_dead_key": "u_dead_key",
    "_dead_value": "u_dead_value",
}
"""A user's columns carried by its ``keep`` copy only, and their names in the join."""


def _roles(good: Column, always: str) -> Column:
    """A record's copies: ``always`` for every record, ``join`` too for a good one."""
    return F.explode(
        F.when(good, F.array(F.lit(always), F.lit(JOIN))).otherwise(F.array(F.lit(always)))
    )


def join_frame(users: DataFrame, events: DataFrame, settings: Settings) -> DataFrame:
    """Every record of both topics, read once, through one stream-stream full outer join.

    Each record comes in as one or two copies (``role``):

    * every page event as a ``count`` copy (its type, or its dead letter), and every user as a
      ``keep`` copy (its details, or its dead letter). They never meet the join's condition,
      so Spark passes them through at once, never into its state, and never drops them as late
      (their event time is null): rows ``event`` and ``user``;
    * every good record also as a ``join`` copy, with its event time: an event matches a user
      whose time is within the bound, once per version of the user (rows ``match``); an event
      that found none when the watermark passes the bound comes out alone (``unmatched``). A
      user that found no event is dropped then.
    """
    joins = settings.joins
    watermark = f"{joins.watermark_s} seconds"
    good = F.col("reason").isNull()
    role = F.col("role")
    joining, counting, keeping = role == JOIN, role == COUNT, role == KEEP
    left = (
        events.select("*", _roles(good, COUNT).alias("role"))
        .select(
            F.col("role").alias("e_role"),
            F.when(joining, F.col("_partition").cast("long") * KEY_SHIFT + F.col("_offset")).alias(
                "event_key"
            ),
            F.when(joining, F.col("user_id")).alias("user_id"),
            F.when(joining, F.col("page")).alias("page"),
            F.when(good, F.col("event")).alias("event"),
            F.when(joining, F.col("_time")).alias("event_time"),
            F.when(counting, F.col("_dead_key")).alias("e_dead_key"),
            F.when(counting, F.col("_dead_value")).alias("e_dead_value"),
        )
        .withWatermark("event_time", watermark)
    )
    right = (
        users.select("*", _roles(good, KEEP).alias("role"))
        .select(
            F.col("role").alias("u_role"),
            F.col("user_id").alias("u_user_id"),
            F.when(joining, F.col("_time")).alias("user_time"),
            *(F.when(keeping, F.col(name)).alias(alias) for name, alias in KEPT.items()),
        )
        .withWatermark("user_time", watermark)
    )
    bound = f"INTERVAL {joins.match_bound_s} SECONDS"
    condition = F.expr(
        f"e_role = '{JOIN}' AND u_role = '{JOIN}' AND user_id = u_user_id "
        f"AND user_time >= event_time - {bound} AND user_time <= event_time + {bound}"
    )
    joined = left.join(right, condition, "fullOuter")
    e_role, u_role = F.col("e_role"), F.col("u_role")
    alone = (e_role == JOIN) & u_role.isNull()
    kind = (
        F.when(e_role == COUNT, F.lit("event"))
        .when(u_role == KEEP, F.lit("user"))
        .when(alone, F.lit("unmatched"))
        .when(e_role == JOIN, F.lit("match"))
    )  # null: a user that matched no event, once the watermark passed the bound
    return joined.select(
        kind.alias("kind"),
        F.when((e_role == COUNT) | alone, F.col("event")).alias("event"),
        F.coalesce("user_id", F.when(u_role == KEEP, F.col("u_user_id"))).alias("user_id"),
        "name",
        "email",
        F.coalesce("event_time", "updated_at").alias("time"),
        F.when(alone, F.col("page")).alias("page"),
        F.col("u_partition").alias("partition"),
        F.col("u_offset").alias("offset"),
        "event_key",
        F.coalesce("e_dead_key", "u_dead_key").alias("dead_key"),
        F.coalesce("e_dead_value", "u_dead_value").alias("dead_value"),
    ).where(F.col("kind").isNotNull())


def user_key(user_id: str, name: str | None, email: str | None) -> str:
    return "\t".join((user_id, name or "", email or ""))


class JoinWriter:
    """One micro-batch of the join's output: dead letters to their topic first (a crash before
    the warehouse write replays them), then everything else into the join tables (added once
    per batch, see :class:`~clickstream.sinks.join_tables.JoinTables`), whose changes go to
    the result topic as new totals."""

    def __init__(self, settings: Settings, query: Store) -> None:
        self.query = query
        self.dead = KafkaTopic.dead_letters(settings)
        self.results = ResultsTopic.topic_only(settings)
        joins = settings.joins
        self.tables = JoinTables(
            settings.duckdb_path,
            query=QUERY,
            checkpoint_id=self.checkpoint_id,
            events_topic=joins.events_topic,
            on_change=self.send,
            lock_timeout_s=settings.warehouse.lock_timeout_s,
            keep_keys_s=4 * (joins.watermark_s + joins.match_bound_s) + 60,
        )
        self._checkpoint_id = ""
        self._batch_id = -1

    def checkpoint_id(self) -> str:
        """The query's id, kept in its checkpoint: batch ids count from 0 again in a new one.
        Spark writes it before the first batch and never changes it: read once."""
        if not self._checkpoint_id:
            self._checkpoint_id = checkpoint.query_id(self.query)
        return self._checkpoint_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.toArrow()
        if not rows.num_rows:
            return
        dead = rows.filter(pc.is_valid(rows["dead_value"]))
        if dead.num_rows:
            self.dead.write(
                pa.table({"key": dead["dead_key"], "value": dead["dead_value"]}), batch_id
            )
        self.tables.write(rows, batch_id)
        self._batch_id = batch_id

    def send(self, change: BatchChange) -> None:
        counts: list[tuple[str, str, int]] = []
        for old, new, total in change.renamed:
            counts.append((USER_EVENTS, user_key(*old), 0))
            counts.append((USER_EVENTS, user_key(*new), total))
        for user, total in change.user_totals:
            counts.append((USER_EVENTS, user_key(*user), total))
        counts.extend((EVENT_TYPES, event, n) for event, n in change.event_types.items())
        if change.unmatched is not None:
            counts.append((UNMATCHED, "all", change.unmatched))
        if not counts:
            return
        now_ms = int(time.time() * 1000)  # totals: from the start of time until now
        totals = [
            WindowCount(metric=metric, window_start=0, window_end=now_ms, key=key, count=n)
            for metric, key, n in counts
        ]
        self.results.write(counts_table(totals), self._batch_id)
