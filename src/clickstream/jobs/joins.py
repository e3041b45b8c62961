"""Users and their page events (the stream-joins scenario, seed 003): counts on the executors,
the join in the warehouse.

The seed answers two questions over everything ever sent: how many events each known user
made, with the name and email (an inner merge of all events with all users on ``user_id``,
with no time bound), and how many events of each type there were. So Spark only aggregates,
and views join at query time (:mod:`clickstream.sinks.join_tables`):

* one query (``counts``) reads each topic once and parses each record once against the
  seed's JSON Schema (:mod:`clickstream.events.joins`); both topics go through one stateless
  micro-batch;
* each task reduces its records (:func:`reduce_records`, in ``mapInArrow``) to page events
  counted per (``user_id``, ``event``), the newest record of each user, and the dead letters;
  the driver merges those aggregates (the same reduction) and nothing else;
* the batch's dead letters go to the dead-letter topic, its aggregates to the warehouse in one
  transaction, once however often Spark replays it, and the new totals of the users and event
  types it touched to the result topic (metrics ``joins.user_events`` keyed
  ``user_id<TAB>name<TAB>email``, ``joins.event_types`` keyed by event, ``joins.unmatched``
  keyed ``all``; totals: ``window_start`` is 0 and ``window_end`` the time of writing).

Nothing is late: an event counts for its user whenever either arrives, a year apart or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.events.joins import MAX_CHARS, PageEvent, User, fields
from clickstream.events.results import COUNTS, WindowCount, counts_table, later
from clickstream.settings import Settings
from clickstream.sinks import join_store
from clickstream.sinks.join_tables import AGGREGATES, COUNT, TABLES, USER, BatchChange
from clickstream.sinks.kafka_topic import KafkaTopic
from clickstream.sinks.results_topic import ResultsTopic
from clickstream.spark.io import read_kafka
from clickstream.streaming import checkpoint
from clickstream.streaming.checkpoint import Store
from clickstream.streaming.parse import dead_letter_key, dead_letter_value, source_time
from clickstream.streaming.reduce import reduce_batch
from clickstream.streaming.spec import JobSpec, QuerySpec
from clickstream.streaming.string_fields import parse_string_fields

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NAME = "joins"
QUERY = "counts"
OLD_QUERIES = ("users", "events", "join", "all")
"""The queries of the stream-stream join versions, each with its own checkpoint."""
USER_EVENTS = "joins.user_events"
EVENT_TYPES = "joins.event_types"
UNMATCHED = "joins.unmatched"
EVENT_SIDE, USER_SIDE = 0, 1
DEAD = 2
"""A reduced row's ``kind`` besides the warehouse's ``COUNT`` and ``USER``: a dead letter."""
assert (COUNT, USER) == (EVENT_SIDE, USER_SIDE)  # reduce_records merges its own rows too
PHASES = ("reduce", "merge", "dead letters", "warehouse", "results")
"""Where a batch's time goes: Spark reading, parsing and the tasks' reduction, collected
(``reduce``); the driver's merge of the tasks' rows; the dead-letter topic; the warehouse
transaction; the new totals to the result topic, sent while the warehouse commits (only the
wait after the commit is counted here)."""
log = logging.getLogger(__name__)
REDUCED = pa.schema([*AGGREGATES, ("dead_key", pa.string()), ("dead_value", pa.string())])


def event_time(timezone: str) -> Column:
    """``event_timestamp`` as a time: without a zone (as the seed writes it), a local time in
    ``timezone`` (``jobs.source_timezone``)."""
    return source_time(F.col("event_timestamp"), timezone)


def parse(raw: DataFrame, kind: type[User] | type[PageEvent], settings: Settings) -> DataFrame:
    """Records of ``kind`` checked against its schema, with ``_time`` (the event time) and the
    dead-letter columns ``_dead_key``/``_dead_value`` (null for good records)."""
    ahead = settings.jobs.max_future_s
    at = event_time(settings.jobs.source_timezone)
    checks = [
        (at.isNull(), "field event_timestamp is not a time (yyyy-MM-dd HH:mm:ss)"),
        (
            at > F.col("_kafka_timestamp") + F.expr(f"INTERVAL {ahead} SECONDS"),
            f"field event_timestamp is more than {ahead} s ahead of its arrival in Kafka",
        ),
    ]
    parsed = parse_string_fields(raw, fields(kind), MAX_CHARS, checks)
    bad = F.col("reason").isNotNull()
    return parsed.select(
        "*",
        F.when(~bad, at).alias("_time"),
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


def records(users: DataFrame, events: DataFrame) -> DataFrame:
    """Both parsed topics as one stream of the columns :func:`reduce_records` reads."""

    def side(frame: DataFrame, kind: int, **columns: Column) -> DataFrame:
        null = F.lit(None).cast("string")
        good = F.col("reason").isNull()
        return frame.select(
            F.lit(kind).alias("side"),
            F.when(good, F.col("user_id")).alias("user_id"),
            *(F.when(good, columns.get(c, null)).alias(c) for c in ("event", "name", "email")),
            F.unix_millis("_time").alias("time"),
            F.col("_partition").cast("int").alias("partition"),
            F.col("_offset").alias("offset"),
            F.col("_dead_key").alias("dead_key"),
            F.col("_dead_value").alias("dead_value"),
        )

    return side(events, EVENT_SIDE, event=F.col("event")).unionByName(
        side(users, USER_SIDE, name=F.col("name"), email=F.col("email"))
    )


def reduce_records(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """One task's records (:func:`records`) -> events counted per (user, event), the newest
    record of each user, and the dead letters (:data:`REDUCED` rows). Also merges such rows
    (the driver's step), since it reads ``side`` or ``kind`` alike and sums ``count``."""
    received = list(batches)
    if not received:  # an empty partition, or an empty batch on the driver
        return
    rows = pa.Table.from_batches(received)
    if not rows.num_rows:
        return
    kind = rows["side"] if "side" in rows.column_names else rows["kind"]
    dead = pc.is_valid(rows["dead_value"])
    events = rows.filter(pc.and_(pc.equal(kind, EVENT_SIDE), pc.invert(dead)))
    users = rows.filter(pc.and_(pc.equal(kind, USER_SIDE), pc.invert(dead)))
    letters = rows.filter(dead)
    newest = _newest(users)
    ones = "count" in rows.column_names
    counted = events.group_by(["user_id", "event"]).aggregate(
        [("count", "sum") if ones else ("user_id", "count"), ("time", "max")]
    )
    out = [
        _shape(
            COUNT,
            counted.num_rows,
            user_id=counted["user_id"],
            event=counted["event"],
            count=counted["count_sum" if ones else "user_id_count"],
            time=counted["time_max"],
        ),
        _shape(USER, newest.num_rows, **{c: newest[c] for c in newest.column_names}),
        _shape(
            DEAD,
            letters.num_rows,
            dead_key=letters["dead_key"],
            dead_value=letters["dead_value"],
        ),
    ]
    yield from pa.concat_tables(out).to_batches()


def _newest(users: pa.Table) -> pa.Table:
    """The newest record of each user: latest ``time``, then partition and offset."""
    order = [("user_id", "ascending"), ("time", "descending")]
    order += [("partition", "descending"), ("offset", "descending")]
    ranked = users.sort_by(order)
    ids = ranked["user_id"]
    n = ranked.num_rows
    if n > 1:
        first = pc.not_equal(ids.slice(1), ids.slice(0, n - 1))
        keep = pa.concat_arrays([pa.array([True]), *first.chunks])
        ranked = ranked.filter(keep)
    return ranked.select(["user_id", "name", "email", "time", "partition", "offset"])


def _shape(kind: int, n: int, **columns: object) -> pa.Table:
    data = {
        f.name: pc.cast(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in REDUCED
        if f.name != "kind"
    }
    return pa.table({"kind": pa.array([kind] * n, pa.int32()), **data}, schema=REDUCED)


def refuse_old_checkpoints(spark: SparkSession, settings: Settings) -> None:
    """Versions before this one joined the two streams within a time bound (one query ``all``,
    before it three), each with its own checkpoint; the warehouse's totals were counted by
    them."""
    old = [
        q
        for q in OLD_QUERIES
        if checkpoint.store(checkpoint.query_location(settings, NAME, q), spark).exists("offsets")
    ]
    if old:
        folder = checkpoint.join(checkpoint.root(settings), NAME)
        raise ConfigError(
            f"the joins job's checkpoints in {folder} ({', '.join(old)}) were written by an "
            "earlier clickstream version, which joined the streams within a time bound; this "
            "one counts events per user and joins them in the warehouse, over all time. To "
            f"count again, delete {folder} and the tables of that version in "
            f"{settings.duckdb_path} (it names them when it starts), then start the job: it "
            f"reads both topics from their start into {', '.join(TABLES)}"
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
    frame = records(users, events)
    return JobSpec(NAME, [QuerySpec(QUERY, frame, writer, trigger_s=joins.trigger_s)])


def user_key(user_id: str, name: str | None, email: str | None) -> str:
    return "\t".join((user_id, name or "", email or ""))


class JoinWriter:
    """One micro-batch: reduced by each task on the executors (:func:`reduce_records` in
    ``mapInArrow``, no shuffle; on the driver when small), the tasks' aggregates merged, dead
    letters to their topic first (a crash before the warehouse write replays them), then the
    aggregates into the join tables (once per batch), whose changes go to the result topic as
    new totals."""

    def __init__(self, settings: Settings, query: Store) -> None:
        self.query = query
        self.driver_max = settings.jobs.driver_reduce_max
        self.dead = KafkaTopic.dead_letters(settings)
        self.results = ResultsTopic.topic_only(settings)
        self.tables = join_store(
            settings, query=QUERY, checkpoint_id=self.checkpoint_id, on_change=self.send
        )
        self._checkpoint_id = ""
        self._batch_id = -1
        self._newest_event_ms: int | None = None
        """The newest event or user time this process has counted (the totals' freshness)."""
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="joins-results")
        self._sending: Future[None] | None = None
        self.spent: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        """Seconds in each phase of the batches so far (:data:`PHASES`): where a batch's time
        goes inside Spark's ``addBatch`` (``bench/joins.py`` prints it)."""

    def checkpoint_id(self) -> str:
        """The query's id, kept in its checkpoint: batch ids count from 0 again in a new one.
        Spark writes it before the first batch and never changes it: read once."""
        if not self._checkpoint_id:
            self._checkpoint_id = checkpoint.query_id(self.query)
        return self._checkpoint_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        before = dict(self.spent)
        size = checkpoint.batch_records(self.query, batch_id)
        parts = reduce_batch(batch, reduce_records, REDUCED, self.driver_max, size)
        reduced = time.perf_counter()
        merged = pa.Table.from_batches(list(reduce_records(iter(parts.to_batches()))), REDUCED)
        self.spent["reduce"] += reduced - started
        if not merged.num_rows:
            return
        letters = merged.filter(pc.equal(merged["kind"], DEAD))
        merged_at = time.perf_counter()
        self.spent["merge"] += merged_at - reduced
        if letters.num_rows:
            self.dead.write(
                pa.table({"key": letters["dead_key"], "value": letters["dead_value"]}), batch_id
            )
        self._batch_id = batch_id
        aggregates = merged.filter(pc.not_equal(merged["kind"], DEAD)).select(AGGREGATES.names)
        newest = pc.max(aggregates["time"]).as_py() if aggregates.num_rows else None
        self._newest_event_ms = later(self._newest_event_ms, newest)
        written = time.perf_counter()
        self.spent["dead letters"] += written - merged_at
        try:
            self.tables.write(aggregates, batch_id)
        finally:
            stored = time.perf_counter()
            self.spent["warehouse"] += stored - written
            sending, self._sending = self._sending, None
            if sending is not None:
                sending.result()  # raises what the result topic raised
                self.spent["results"] += time.perf_counter() - stored
        log.debug(
            "joins batch %d: %d records reduced to %d rows; %s",
            batch_id,
            size or -1,
            merged.num_rows,
            ", ".join(f"{phase} {self.spent[phase] - before[phase]:.2f} s" for phase in PHASES),
        )

    def send(self, change: BatchChange) -> None:
        """The new totals to the result topic, in a thread of their own while the warehouse
        commits (the batch waits for both)."""
        self._sending = self._sender.submit(self._send, change)

    def _send(self, change: BatchChange) -> None:
        counts: list[tuple[str, str, int]] = []
        for old, new, total in change.renamed:
            counts.append((USER_EVENTS, user_key(*old), 0))
            counts.append((USER_EVENTS, user_key(*new), total))
        counts.extend((EVENT_TYPES, event, n) for event, n in change.event_types.items())
        if change.unmatched is not None:
            counts.append((UNMATCHED, "all", change.unmatched))
        users = change.user_totals
        if not counts and not users.num_rows:
            return
        now_ms = int(time.time() * 1000)  # totals: from the start of time until now
        newest = self._newest_event_ms
        few = counts_table(
            [
                WindowCount(
                    metric=metric,
                    window_start=0,
                    window_end=now_ms,
                    key=key,
                    count=n,
                    newest_event_ms=newest,
                )
                for metric, key, n in counts
            ]
        )
        n = users.num_rows  # tens of thousands in a large batch: column by column
        many = pa.table(
            [
                pa.repeat(pa.scalar(USER_EVENTS), n),
                pa.repeat(pa.scalar(0, pa.int64()), n),
                pa.repeat(pa.scalar(now_ms, pa.int64()), n),
                pc.binary_join_element_wise(
                    users["user_id"],
                    pc.fill_null(users["name"], ""),
                    pc.fill_null(users["email"], ""),
                    "\t",
                ),
                users["event_count"],
                pa.repeat(pa.scalar(newest, pa.int64()), n),
            ],
            schema=COUNTS,
        )
        self.results.write(pa.concat_tables([few, many]), self._batch_id)
