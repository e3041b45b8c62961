"""Windowed counts, the generic part: count events per value of a field in event-time windows.

A :class:`Measure` names a metric and the column whose values are counted. Windows are tumbling
(``window_s``) or sliding (a window starts every ``slide_s``), on event time with a watermark;
events later than the watermark are dropped and counted.

:func:`live_counts` is the query of the count jobs. Spark reads and parses each micro-batch
(statelessly: no shuffle, no state store), the driver adds its events to the counts of the open
windows (:mod:`clickstream.jobs.tally`) and writes the windows it changed with their count so
far, so a window reaches the result topic one trigger after its first event instead of after
the watermark passes it. The same batch's malformed records go to the dead-letter topic: one
read and one parse of the topic for both. The newest record of a ``(metric, window_start,
key)`` is the count; the warehouse table is upserted on that key, and a replayed batch
rewrites the same counts (see :mod:`clickstream.events.results`).

:func:`window_distinct` (distinct visitors, not a sum) stays a Spark stateful aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.events.results import TABLE, WindowCount, record_key
from clickstream.jobs.parse import dead_letter_key, dead_letter_value
from clickstream.jobs.spec import QuerySpec, checkpoint_path
from clickstream.jobs.tally import WindowTally
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import DuckDBTable
from clickstream.spark.io import DriverKafkaSink

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


@dataclass(frozen=True)
class Measure:
    metric: str
    """The result's name, e.g. ``shop.gender``."""
    key: Column
    """The counted value of an event (rows where it is null are not counted)."""


@dataclass(frozen=True)
class Windows:
    size_s: int = 1
    slide_s: int | None = None
    watermark_s: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> Windows:
        jobs = settings.jobs
        return cls(jobs.count_window_s, jobs.count_slide_s, jobs.count_watermark_s)

    def window(self, time_col: str) -> Column:
        slide = f"{self.slide_s} seconds" if self.slide_s else None
        return F.window(time_col, f"{self.size_s} seconds", slide)


MAX_KEY_CHARS = 256
"""A counted value (a page path, a referrer host) is cut to this many characters: result keys
stay small whatever an event holds."""

COUNT_BATCH_MAX_EVENTS = 500_000
"""A count micro-batch reads at most this many records (they are collected to the driver)."""


def count_batch_limit(settings: Settings) -> int:
    """Records per count micro-batch: ``spark.max_offsets_per_trigger`` up to
    :data:`COUNT_BATCH_MAX_EVENTS`."""
    limit = settings.spark.max_offsets_per_trigger
    return min(limit, COUNT_BATCH_MAX_EVENTS) if limit else COUNT_BATCH_MAX_EVENTS


def live_counts(
    parsed: DataFrame,
    time_ms: Column,
    measures: list[Measure],
    windows: Windows,
    settings: Settings,
    *,
    job: str,
    name: str = "counts",
    dead_letters: Column | bool = True,
    event_id: Column | None = None,
) -> QuerySpec:
    """The count query over ``parsed`` records (:func:`~clickstream.jobs.parse.parse_json`):
    good records are counted by ``time_ms`` (event time, epoch ms), once per ``event_id`` when
    given (within ``jobs.dedup_s``); bad ones go to the dead-letter topic if ``dead_letters`` is
    true, or a condition that holds for them."""
    good = F.col("reason").isNull()
    columns = [F.when(good, time_ms.cast("long")).alias("_time")]
    if event_id is not None:
        columns.append(F.when(good, event_id.cast("string")).alias("_id"))
    columns += [
        F.when(good, F.substring(m.key.cast("string"), 1, MAX_KEY_CHARS)).alias(f"_m{i}")
        for i, m in enumerate(measures)
    ]
    dead = dead_letters is not False
    if dead:
        condition = F.col("reason").isNotNull()
        if dead_letters is not True:
            condition = condition & dead_letters
        columns += [
            F.when(condition, dead_letter_key()).alias("_dead_key"),
            F.when(condition, dead_letter_value()).alias("_dead_value"),
        ]
    checkpoint = checkpoint_path(settings, job, name)
    if (checkpoint / "state").is_dir():
        raise ConfigError(
            f"the checkpoint {checkpoint} was written by the Spark stateful count query of an "
            "earlier clickstream version: delete it (the counts already written stay; those of "
            "windows still open start again)"
        )
    tally = WindowTally.open(
        windows.size_s,
        windows.slide_s,
        windows.watermark_s,
        checkpoint / "tally",
        dedup_s=settings.jobs.dedup_s,
    )
    writer = CountsWriter(settings, [m.metric for m in measures], tally, dead_letters=dead)
    return QuerySpec(
        name,
        parsed.select(*columns),
        writer,
        "append",
        settings.jobs.count_trigger_s,
        late_events=lambda: tally.late_events,
    )


class CountsWriter:
    """The ``foreachBatch`` function of :func:`live_counts`: collects the batch (a few narrow
    columns) to the driver as Arrow, adds the good records to the tally, dead-letters the bad
    ones, writes the changed counts, then commits the tally."""

    def __init__(
        self, settings: Settings, metrics: list[str], tally: WindowTally, *, dead_letters: bool
    ) -> None:
        self.metrics = metrics
        self.tally = tally
        self.results = ResultsWriter(settings)
        self.dead = (
            DriverKafkaSink(settings.topics.dead_letter, settings=settings)
            if dead_letters
            else None
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.toArrow()
        good = rows.filter(pc.is_valid(rows["_time"]))
        keys = [(m, good[f"_m{i}"]) for i, m in enumerate(self.metrics)]
        ids = good["_id"] if "_id" in good.column_names else None
        update = self.tally.count(batch_id, good["_time"], keys, ids)
        if update is None:
            return  # counted and written before a restart
        if self.dead is not None:
            dead = rows.filter(pc.is_valid(rows["_dead_value"]))
            self.dead.send(
                zip(dead["_dead_key"].to_pylist(), dead["_dead_value"].to_pylist(), strict=True)
            )
        self.results.write(update.results(self.tally.size_ms))
        self.tally.commit(update)


def window_distinct(
    events: DataFrame, time_col: str, metric: str, of: list[str], windows: Windows
) -> DataFrame:
    """The (approximate, HyperLogLog) number of distinct ``of`` values per window, key ``all``."""
    counted = (
        events.withWatermark(time_col, f"{windows.watermark_s} seconds")
        .groupBy(windows.window(time_col))
        .agg(F.approx_count_distinct(F.struct(*of)).alias("count"))
        .withColumn("metric", F.lit(metric))
        .withColumn("key", F.lit("all"))
    )
    return _shape(counted, F.col("count"))


def _shape(counted: DataFrame, count: Column) -> DataFrame:
    return counted.select(
        "metric",
        F.unix_millis("window.start").alias("window_start"),
        F.unix_millis("window.end").alias("window_end"),
        "key",
        count.cast("long").alias("count"),
    )


class ResultsWriter:
    """A ``foreachBatch`` function writing counts to the result topic (JSON, keyed by
    ``metric|window_start|key``) and to the warehouse table ``window_counts`` (upserted on that
    key, window bounds as timestamps).

    Counts are few (windows x keys changed in one micro-batch), so the batch is collected to the
    driver once, as Arrow, and written from there by one long-lived producer: one Spark job per
    micro-batch instead of one per sink, which is most of a count's latency.
    """

    def __init__(self, settings: Settings) -> None:
        self.topic = DriverKafkaSink(settings.topics.results, settings=settings)
        self.table = DuckDBTable(
            settings.duckdb_path,
            TABLE,
            key="result_key",
            lock_timeout_s=settings.warehouse.lock_timeout_s,
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.write([WindowCount(**r) for r in batch.toArrow().to_pylist()])

    def write(self, counts: list[WindowCount]) -> None:
        if not counts:
            return
        keys = [record_key(c.metric, c.window_start, c.key) for c in counts]
        encode = msgspec.json.encode
        self.topic.send(zip(keys, map(encode, counts), strict=True))
        utc = pa.timestamp("ms", tz="UTC")
        self.table.upsert(
            pa.table(
                {
                    "result_key": keys,
                    "metric": [c.metric for c in counts],
                    "window_start": pc.cast(pa.array([c.window_start for c in counts]), utc),
                    "window_end": pc.cast(pa.array([c.window_end for c in counts]), utc),
                    "key": [c.key for c in counts],
                    "count": pa.array([c.count for c in counts], pa.int64()),
                }
            )
        )
