"""Windowed counts, the generic part: count events per value of a field in event-time windows.

A :class:`Measure` names a metric and the column whose values are counted. Every measure of a
job shares one stateful aggregation: each event becomes one ``(metric, key)`` row per measure,
grouped by window, metric and key. Windows are tumbling (``window_s``) or sliding (a window
starts every ``slide_s``), on event time with a watermark; events later than the watermark are
dropped and counted in the query's progress.

The queries run in **update** mode: each micro-batch writes the windows it changed with their
count so far, so a window reaches the result topic one trigger after its first event instead of
after the watermark passes it. The newest record of a ``(metric, window_start, key)`` is the
count; the warehouse table is upserted on that key, and a replayed batch rewrites the same
counts (see :mod:`clickstream.events.results`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.events.results import TABLE, WindowCount, record_key
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


def window_counts(
    events: DataFrame, time_col: str, measures: list[Measure], windows: Windows
) -> DataFrame:
    """Events with an event-time column -> rows (metric, window_start, window_end, key, count),
    the times in epoch milliseconds."""
    pairs = F.array(
        *(
            F.struct(F.lit(m.metric).alias("metric"), m.key.cast("string").alias("key"))
            for m in measures
        )
    )
    exploded = (
        events.withWatermark(time_col, f"{windows.watermark_s} seconds")
        .select(time_col, F.inline(pairs))
        .where(F.col("key").isNotNull())
    )
    counted = exploded.groupBy(windows.window(time_col), "metric", "key").count()
    return _shape(counted, F.col("count"))


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
        rows = batch.toArrow()
        if rows.num_rows == 0:
            return
        counts = [WindowCount(**r) for r in rows.to_pylist()]
        keys = [record_key(c.metric, c.window_start, c.key) for c in counts]
        encode = msgspec.json.encode
        self.topic.send(zip(keys, map(encode, counts), strict=True))
        utc = pa.timestamp("ms", tz="UTC")
        self.table.upsert(
            pa.table(
                {
                    "result_key": keys,
                    "metric": rows["metric"],
                    "window_start": pc.cast(rows["window_start"], utc),
                    "window_end": pc.cast(rows["window_end"], utc),
                    "key": rows["key"],
                    "count": rows["count"],
                }
            )
        )
