"""Distinct values per window (active sessions), a Spark stateful aggregation: HyperLogLog per
window, and each window's newest event time beside it in the state. A checkpoint written before
that time was kept (no ``max`` in its state's schema) runs on in its old shape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.streaming import checkpoint
from clickstream.streaming.checkpoint import Store
from clickstream.streaming.counts import Windows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

NEWEST = "newest"
"""The name of a window's newest event time in :func:`window_distinct`'s state."""


def keeps_newest(query: Store) -> bool:
    """Whether the query's checkpoint keeps each window's newest event time in its state: yes
    for a new checkpoint; no for one written before it was kept (no ``max`` in the state's
    schema), which then goes on as it was, its counts without ``newest_event_ms`` (delete the
    checkpoint to have it)."""
    schema = checkpoint.state_schema(query)
    return not schema or '"name":"max"' in schema


def window_distinct(
    events: DataFrame,
    time_col: str,
    metric: str,
    of: list[str],
    windows: Windows,
    *,
    newest: bool = True,
) -> DataFrame:
    """The (approximate, HyperLogLog) number of distinct ``of`` values per window, key ``all``;
    with ``newest``, each window's newest event time too (``newest_event_ms``: Spark keeps it
    in the window's state, so a checkpoint written without it needs ``newest=False``)."""
    aggregates = [F.approx_count_distinct(F.struct(*of)).alias("count")]
    if newest:
        aggregates.append(F.max(time_col).alias(NEWEST))
    counted = (
        events.withWatermark(time_col, f"{windows.watermark_s} seconds")
        .groupBy(windows.window(time_col))
        .agg(*aggregates)
        .withColumn("metric", F.lit(metric))
        .withColumn("key", F.lit("all"))
    )
    return counted.select(
        "metric",
        F.unix_millis("window.start").alias("window_start"),
        F.unix_millis("window.end").alias("window_end"),
        "key",
        F.col("count").cast("long").alias("count"),
        *([F.unix_millis(NEWEST).alias("newest_event_ms")] if newest else []),
    )
