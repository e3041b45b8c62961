"""Top songs, live (the songs scenario): song plays -> the warehouse and ranked counts.

Reads ``songs.topic`` (``clickstream simulate songs``, or the seed's own producer) and runs two
queries:

* ``counts``: plays per artist and song in the current minute (``songs.minute``), the current
  hour (``songs.hour``) and all time (``songs.all``, one window from the epoch), to the result
  topic and the warehouse table ``window_counts``, keyed ``artist/song_name``; the dashboard
  ranks them, every ``jobs.count_trigger_s``. Counted where the plays are, as the generic count
  jobs (:mod:`clickstream.streaming.counts`): one ``mapInArrow`` per micro-batch in which each task
  reduces its plays to partial counts per (metric, window, key) for each of the three tallies,
  against each tally's watermark as of the batch start, with its late plays, its newest play
  time and its dead letters; the driver merges only those partials into the open windows
  (:meth:`~clickstream.streaming.tally.WindowTally.merge`). The seed stamps plays anywhere earlier
  in the current month, so the minute and hour windows stay open ``songs.open_windows_s`` (40
  days) behind the newest play: a play of this month counts in the windows of its time, never
  dropped as late. All time is a plain running total (every play in the one window, which never
  closes). Each of the three tallies commits per batch id, so a replayed micro-batch is not
  counted twice. Bad records go to the dead-letter topic with the reason.
* ``plays``: every play into ``song_plays`` (DuckDB, upserted on ``play_id``), or with
  ``warehouse.bigquery_project`` set, into BigQuery instead
  (:class:`~clickstream.sinks.bigquery_stream.BigQueryMerge`). The payload has no event id, so
  ``play_id`` is the record's place in Kafka, ``topic/partition/offset``: a replayed batch
  writes the same ids again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.events.results import TABLE, WindowCount
from clickstream.events.songs import (
    EVENT_TYPE,
    MAX_USER,
    MIN_USER,
    SPARK_TIME_FORMAT,
    SongPlay,
)
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import DuckDBTable, writing
from clickstream.sinks.kafka_topic import DriverKafkaSink
from clickstream.sinks.results_topic import ResultsTopic
from clickstream.spark.io import read_kafka
from clickstream.streaming import checkpoint
from clickstream.streaming.parse import dead_letter_key, dead_letter_value, good, parse_json
from clickstream.streaming.reduce import Reduced, TallyPart, run_again
from clickstream.streaming.spec import JobSpec, QuerySpec
from clickstream.streaming.tally import WindowTally

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from clickstream.sinks.base import Sink

NAME = "songs"
PLAYS_TABLE = "song_plays"
WINDOWS = {"songs.minute": 60, "songs.hour": 3600}
ALL_TIME = "songs.all"
ALL_TIME_END = 253_402_300_800_000
"""``window_end`` of the all-time window (year 10000): it never closes."""
REQUIRED = ["user_id", "artist", "song_id", "song_name", "event_type", "timestamp"]
RANKING_VIEW = "top_songs"


def played_at() -> Column:
    """The play's time (UTC), null when ``timestamp`` is not ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""
    return F.try_to_timestamp(F.col("timestamp"), F.lit(SPARK_TIME_FORMAT))


def parse(raw: DataFrame, settings: Settings) -> DataFrame:
    at = played_at()
    future_ms = settings.jobs.max_future_s * 1000
    ahead = F.unix_millis(at) > F.unix_millis("_kafka_timestamp") + future_ms
    checks = [
        (~F.col("user_id").between(MIN_USER, MAX_USER), f"user_id must be {MIN_USER}-{MAX_USER}"),
        (~F.col("song_id").between(0, 9), "song_id must be 0-9"),
        (F.col("event_type") != EVENT_TYPE, f"event_type must be {EVENT_TYPE}"),
        (at.isNull(), "timestamp must be YYYY-MM-DD HH:MM:SS"),
        (
            ahead,
            f"timestamp is more than {settings.jobs.max_future_s} s ahead of its arrival in Kafka",
        ),
    ]
    return parse_json(raw, SongPlay, REQUIRED, checks)


def song_key() -> Column:
    return F.concat_ws("/", "artist", "song_name")


def split_key(key: str) -> tuple[str, str]:
    """``artist/song_name`` -> (artist, song_name)."""
    artist, _, song = key.partition("/")
    return artist, song


def play_id() -> Column:
    return F.concat_ws("/", "_topic", F.col("_partition").cast("string"), "_offset")


def plays(parsed: DataFrame) -> DataFrame:
    """Good plays as ``song_plays`` rows."""
    return good(parsed.withColumn("play_id", play_id())).select(
        "play_id",
        "user_id",
        "artist",
        F.col("song_id").cast("int").alias("song_id"),
        "song_name",
        "event_type",
        "timestamp",
        played_at().alias("played_at"),
    )


class SongCounts:
    """The ``counts`` query's writer: three tallies (minute, hour, all time), one snapshot each
    per batch, and the changed counts to the result topic and ``window_counts``."""

    def __init__(self, settings: Settings, query: checkpoint.Store) -> None:
        late = settings.songs.open_windows_s

        def tally(name: str, size: int, delay: int) -> WindowTally:
            store = checkpoint.tally_store(query, name)
            return WindowTally.open(size, None, delay, store)

        self.tallies = {
            metric: tally(f"tally-{size}s", size, late) for metric, size in WINDOWS.items()
        }
        # All time: every play at time 0 in one 1-s window that the watermark (0) never closes.
        self.all_time = tally("tally-all", 1, 0)
        self.query = query
        self.results = ResultsTopic(settings)
        self.driver_max = settings.jobs.driver_reduce_max
        self.dead = DriverKafkaSink(settings.topics.dead_letter, settings=settings)
        self.duckdb_path = settings.duckdb_path
        self.lock_timeout_s = settings.warehouse.lock_timeout_s
        self._view = False

    @property
    def late_events(self) -> int:
        return sum(t.late_events for t in self.tallies.values())

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        tallies, parts = self.parts(batch_id)
        if not tallies:  # counted and written before a restart
            run_again(batch)
            return
        records = checkpoint.batch_records(self.query, batch_id)
        reduced = Reduced.of(batch, parts, self.driver_max, records)
        metrics = [m for m, _ in tallies]
        partials = reduced.partials(metrics)
        newest = reduced.newest()
        pending = []
        for index, (metric, tally) in enumerate(tallies):
            mine = partials.filter(pc.equal(partials["metric"], metric))
            if tally is self.all_time:
                update = tally.merge(batch_id, mine, 0, None if newest is None else 0)
                counts = [
                    WindowCount(
                        metric=c.metric,
                        window_start=0,
                        window_end=ALL_TIME_END,
                        key=c.key,
                        count=c.count,
                    )
                    for c in update.results(1000)
                ]
            else:
                update = tally.merge(batch_id, mine, reduced.late(index), newest)
                counts = update.results(tally.size_ms)
            pending.append((tally, update, counts))
        self.dead.send(reduced.dead_letters())
        written = self.results.write_counts([c for _, _, counts in pending for c in counts])
        if written and not self._view:  # on the counts table, made by the first counts written
            self._create_view()
        for tally, update, _ in pending:
            tally.commit(update)

    def parts(self, batch_id: int) -> tuple[list[tuple[str, WindowTally]], list[TallyPart]]:
        """The tallies that have not committed batch ``batch_id`` (with their metric), and what
        a task counts for each: its windows, late against its watermark as of now."""
        tallies = [
            (metric, tally)
            for metric, tally in [*self.tallies.items(), (ALL_TIME, self.all_time)]
            if batch_id > tally.batch_id
        ]
        parts = [
            TallyPart(("_key",), t.size_ms, t.slide_ms, t.watermark_ms, at_zero=t is self.all_time)
            for _, t in tallies
        ]
        return tallies, parts

    def _create_view(self) -> None:
        with writing(self.duckdb_path, self.lock_timeout_s) as con:
            con.execute(
                f"CREATE OR REPLACE VIEW {RANKING_VIEW} AS SELECT metric, window_start, "
                "window_end, split_part(key, '/', 1) AS artist, "
                "substr(key, length(split_part(key, '/', 1)) + 2) AS song_name, count, "
                "rank() OVER (PARTITION BY metric, window_start, split_part(key, '/', 1) "
                f"ORDER BY count DESC) AS rank FROM {TABLE} WHERE metric LIKE 'songs.%'"
            )
        self._view = True


def counts_query(parsed: DataFrame, settings: Settings) -> QuerySpec:
    ok = F.col("reason").isNull()
    frame = parsed.select(
        F.when(ok, F.unix_millis(played_at())).alias("_time"),
        F.when(ok, F.substring(song_key(), 1, 600)).alias("_key"),
        F.when(~ok, dead_letter_key()).alias("_dead_key"),
        F.when(~ok, dead_letter_value()).alias("_dead_value"),
    )
    location = checkpoint.query_location(settings, NAME, "counts")
    query = checkpoint.store(location, parsed.sparkSession)
    writer = SongCounts(settings, query)
    committed = checkpoint.committed_batches(query)
    lost = [t for t in (*writer.tallies.values(), writer.all_time) if not t.has_snapshot]
    if committed and lost:
        raise ConfigError(
            f"the checkpoint {location} has {len(committed)} committed batches but a song "
            "tally is missing or empty: its windows would count again from zero and overwrite "
            "correct counts. Restore the tally folders from where they were, or delete the "
            "checkpoint to count the topic again from its start"
        )
    return QuerySpec(
        "counts",
        frame,
        writer,
        "append",
        settings.jobs.count_trigger_s,
        late_events=lambda: writer.late_events,
    )


def plays_sink(settings: Settings) -> Sink:
    if settings.warehouse.bigquery_project:
        from clickstream.sinks.bigquery_stream import BigQueryMerge

        return BigQueryMerge(settings, PLAYS_TABLE, key="play_id")
    return DuckDBTable(
        settings.duckdb_path,
        PLAYS_TABLE,
        key="play_id",
        lock_timeout_s=settings.warehouse.lock_timeout_s,
    )


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    def read() -> DataFrame:
        return read_kafka(
            spark,
            settings.songs.topic,
            settings=settings,
            starting_offsets=starting_offsets,
        )

    sink = plays_sink(settings)
    return JobSpec(
        NAME,
        [
            counts_query(parse(read(), settings), settings),
            QuerySpec("plays", plays(parse(read(), settings)), sink.write, "append"),
        ],
    )
