"""The windowed-count results: the result topic (JSON, keyed by ``metric|window_start|key``)
and the warehouse table ``window_counts`` (upserted on that key, window bounds as timestamps).
A count written again (a replayed batch) replaces the one before in both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from clickstream.events.results import TABLE, WindowCount, record_key
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import DuckDBTable
from clickstream.sinks.kafka_topic import DriverKafkaSink

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class ResultsTopic:
    """A sink (and ``foreachBatch`` function) writing counts to the result topic and to the
    warehouse table.

    Counts are few (windows x keys changed in one micro-batch), so the batch is collected to the
    driver once, as Arrow, and written from there by one long-lived producer: one Spark job per
    micro-batch instead of one per sink, which is most of a count's latency.
    """

    name = "results"

    def __init__(self, settings: Settings) -> None:
        self.topic = DriverKafkaSink(settings.topics.results, settings=settings)
        self.table = DuckDBTable(
            settings.duckdb_path,
            TABLE,
            key="result_key",
            lock_timeout_s=settings.warehouse.lock_timeout_s,
        )

    def write(self, batch: DataFrame, batch_id: int) -> int:
        return self.write_counts([WindowCount(**r) for r in batch.toArrow().to_pylist()])

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.write(batch, batch_id)

    def write_counts(self, counts: list[WindowCount]) -> int:
        """Write counts made on the driver; returns how many."""
        if not counts:
            return 0
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
        return len(counts)
