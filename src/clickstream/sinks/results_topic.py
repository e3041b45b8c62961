"""The windowed-count results: the result topic (JSON, keyed by ``metric|window_start|key``)
and the warehouse table ``window_counts`` (upserted on that key, window bounds as timestamps).
A count written again (a replayed batch) replaces the one before in the table; on the topic it
is a second record with the same key and count, and readers keep the newest."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from clickstream.events.results import COUNTS, TABLE, WindowCount, record_key
from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay
from clickstream.sinks.duckdb_table import DuckDBTable
from clickstream.sinks.kafka_topic import KafkaTopic

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class ResultsTopic(BaseSink):
    """Counts (:data:`~clickstream.events.results.COUNTS` rows) to the result topic and to the
    warehouse table.

    Counts are few (windows x keys changed in one micro-batch), so a micro-batch is collected
    to the driver once, as Arrow, and written from there by one long-lived producer: one Spark
    job per micro-batch instead of one per sink, which is most of a count's latency.
    """

    name = "results"
    replay = Replay.AT_LEAST_ONCE

    def __init__(self, topic: KafkaTopic, table: DuckDBTable | None) -> None:
        self.topic = topic
        self.table = table

    @classmethod
    def from_settings(cls, settings: Settings) -> ResultsTopic:
        """``topics.results`` and the warehouse's ``window_counts``."""
        return cls(
            KafkaTopic.from_settings(settings, settings.topics.results, small=True),
            DuckDBTable.from_settings(settings, TABLE, key="result_key"),
        )

    @classmethod
    def topic_only(cls, settings: Settings) -> ResultsTopic:
        """``topics.results`` alone: totals kept in tables of their own (the joins')."""
        return cls(KafkaTopic.from_settings(settings, settings.topics.results, small=True), None)

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        columns = [c for c in COUNTS.names if c in frame.columns]  # newest_event_ms if known
        return self.write_table(frame.select(*columns).toArrow(), batch_id)

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        """Writes ``rows`` (:data:`~clickstream.events.results.COUNTS`), each record stamped with
        the time of writing."""
        if not rows.num_rows:
            return 0
        written = time.time_ns() // 1_000_000
        n = rows.num_rows
        columns = [  # column by column: a dict per row costs more (the joins send 10,000s)
            rows[c].to_pylist() if c in rows.column_names else [None] * n for c in COUNTS.names
        ]
        counts = [
            WindowCount(
                metric=metric,
                window_start=start,
                window_end=end,
                key=key,
                count=count,
                newest_event_ms=newest,
                written_ms=written,
            )
            for metric, start, end, key, count, newest in zip(*columns, strict=True)
        ]
        keys = [record_key(c.metric, c.window_start, c.key) for c in counts]
        encode = msgspec.json.encode
        self.topic.write_pairs(keys, [encode(c) for c in counts])
        if self.table is None:
            return len(counts)
        utc = pa.timestamp("ms", tz="UTC")
        self.table.write_table(
            pa.table(
                {
                    "result_key": keys,
                    "metric": rows["metric"],
                    "window_start": pc.cast(rows["window_start"], utc),
                    "window_end": pc.cast(rows["window_end"], utc),
                    "key": rows["key"],
                    "count": pc.cast(rows["count"], pa.int64()),
                }
            ),
            batch_id,
        )
        return len(counts)
