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

from pyspark.sql import functions as F

from clickstream.events.results import TABLE
from clickstream.events.songs import (
    EVENT_TYPE,
    MAX_USER,
    MIN_USER,
    SPARK_TIME_FORMAT,
    SongPlay,
)
from clickstream.settings import Settings
from clickstream.sinks import warehouse_table
from clickstream.sinks.base import Sink, fan_out
from clickstream.sinks.duckdb_table import writing
from clickstream.spark.io import read_kafka
from clickstream.streaming.counts import Tally, Windows, count_query
from clickstream.streaming.parse import (
    dead_letter_key,
    dead_letter_value,
    good,
    parse_json,
    source_time,
)
from clickstream.streaming.spec import JobSpec, QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

NAME = "songs"
PLAYS_TABLE = "song_plays"
WINDOWS = {"songs.minute": 60, "songs.hour": 3600}
ALL_TIME = "songs.all"
ALL_TIME_END = 253_402_300_800_000
"""``window_end`` of the all-time window (year 10000): it never closes."""
REQUIRED = ["user_id", "artist", "song_id", "song_name", "event_type", "timestamp"]
RANKING_VIEW = "top_songs"


def played_at(timezone: str) -> Column:
    """The play's time, ``timestamp`` read as a local time in ``timezone``
    (``jobs.source_timezone``: the seed's producer stamps its host's clock); null when
    ``timestamp`` is not ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""
    return source_time(F.col("timestamp"), timezone, SPARK_TIME_FORMAT)


def parse(raw: DataFrame, settings: Settings) -> DataFrame:
    at = played_at(settings.jobs.source_timezone)
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


def plays(parsed: DataFrame, settings: Settings) -> DataFrame:
    """Good plays as ``song_plays`` rows."""
    return good(parsed.withColumn("play_id", play_id())).select(
        "play_id",
        "user_id",
        "artist",
        F.col("song_id").cast("int").alias("song_id"),
        "song_name",
        "event_type",
        "timestamp",
        played_at(settings.jobs.source_timezone).alias("played_at"),
    )


class RankingView:
    """Makes the ranking view once counts were written (it reads their table, made by the
    first counts written: a first batch with no good play writes none)."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.duckdb_path
        self.lock_timeout_s = settings.warehouse.lock_timeout_s
        self.made = False

    def __call__(self, written: int) -> None:
        if not written or self.made:
            return
        with writing(self.path, self.lock_timeout_s) as con:
            con.execute(
                f"CREATE OR REPLACE VIEW {RANKING_VIEW} AS SELECT metric, window_start, "
                "window_end, split_part(key, '/', 1) AS artist, "
                "substr(key, length(split_part(key, '/', 1)) + 2) AS song_name, count, "
                "rank() OVER (PARTITION BY metric, window_start, split_part(key, '/', 1) "
                f"ORDER BY count DESC) AS rank FROM {TABLE} WHERE metric LIKE 'songs.%'"
            )
        self.made = True


def tallies(settings: Settings) -> list[Tally]:
    """The minute and hour windows, open ``songs.open_windows_s`` behind the newest play, and
    the all-time total (every play at time 0 in one 1-s window that the watermark, 0, never
    closes)."""
    late = settings.songs.open_windows_s
    key = ("_key",)
    return [
        *(
            Tally((metric,), key, Windows(size, None, late), folder=f"tally-{size}s")
            for metric, size in WINDOWS.items()
        ),
        Tally((ALL_TIME,), key, Windows(1, None, 0), "tally-all", all_time_end=ALL_TIME_END),
    ]


def counts_query(parsed: DataFrame, settings: Settings) -> QuerySpec:
    ok = F.col("reason").isNull()
    frame = parsed.select(
        F.when(ok, F.unix_millis(played_at(settings.jobs.source_timezone))).alias("_time"),
        F.when(ok, F.substring(song_key(), 1, 600)).alias("_key"),
        F.when(~ok, dead_letter_key()).alias("_dead_key"),
        F.when(~ok, dead_letter_value()).alias("_dead_value"),
    )
    return count_query(
        frame, tallies(settings), settings, job=NAME, after_write=RankingView(settings)
    )


def plays_sink(settings: Settings) -> Sink:
    """BigQuery when ``warehouse.bigquery_project`` is set, else the DuckDB warehouse."""
    return warehouse_table(settings, PLAYS_TABLE, key="play_id")


def build(spark: SparkSession, settings: Settings, starting_offsets: str = "earliest") -> JobSpec:
    def read() -> DataFrame:
        return read_kafka(
            spark,
            settings.songs.topic,
            settings=settings,
            starting_offsets=starting_offsets,
        )

    return JobSpec(
        NAME,
        [
            counts_query(parse(read(), settings), settings),
            QuerySpec(
                "plays", plays(parse(read(), settings), settings), fan_out(plays_sink(settings))
            ),
        ],
    )
