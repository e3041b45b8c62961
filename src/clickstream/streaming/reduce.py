"""A count micro-batch reduced to what the driver needs: per tally (:class:`TallyPart`), partial
counts per (metric, window, key) and the late events; the newest event time; and the dead
letters. :func:`reduce_partition` is the ``mapInArrow`` function the executors run (and
the driver, for a small batch); :class:`Reduced` reads its rows on the driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from clickstream.streaming.tally import PARTIALS, window_partials

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


PARTIAL, LATE, NEWEST, DEAD = 0, 1, 2, 3
REDUCED = (
    "kind int, metric int, start long, key string, count long, time long, "
    "dead_key string, dead_value string"
)
_REDUCED = pa.schema(
    [
        ("kind", pa.int32()),
        ("metric", pa.int32()),
        ("start", pa.int64()),
        ("key", pa.string()),
        ("count", pa.int64()),
        ("time", pa.int64()),
        ("dead_key", pa.string()),
        ("dead_value", pa.string()),
    ]
)


@dataclass(frozen=True)
class TallyPart:
    """What a task counts for one tally: the events' values in ``columns``, in the tally's
    windows, late against its watermark as of the batch start; ``at_zero`` counts every event
    at time 0 (a running total in one window)."""

    columns: tuple[str, ...]
    size_ms: int
    slide_ms: int
    watermark_ms: int | None
    at_zero: bool = False


def partial_counts(
    metrics: int, size_ms: int, slide_ms: int, watermark_ms: int | None
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """:func:`reduce_partition` for one tally counting the columns ``_m0`` .. ``_m<metrics-1>``."""
    columns = tuple(f"_m{i}" for i in range(metrics))
    return reduce_partition([TallyPart(columns, size_ms, slide_ms, watermark_ms)])


def reduce_partition(
    parts: Sequence[TallyPart],
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function reducing one partition of a count batch (``_time``, the
    counted columns, ``_dead_key``/``_dead_value`` if any): per part, partial counts
    (``metric``: the column's index, counting on over the parts) and its late events
    (``metric``: the part's index); the newest event time; and the dead letters."""

    def reduce(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = list(batches)
        if not received:  # an empty partition (after a shuffle) gets no batch at all
            return
        table = pa.Table.from_batches(received)
        if table.num_rows == 0:
            return
        good = table.filter(pc.is_valid(table["_time"]))
        out = []
        if good.num_rows:
            metric = 0
            for index, part in enumerate(parts):
                times = pa.repeat(0, good.num_rows) if part.at_zero else good["_time"]
                keys = [(str(metric + j), good[c]) for j, c in enumerate(part.columns)]
                metric += len(part.columns)
                counted, late = window_partials(
                    times, keys, part.size_ms, part.slide_ms, part.watermark_ms
                )
                out.append(
                    _rows(
                        PARTIAL,
                        counted.num_rows,
                        metric=pc.cast(counted["metric"], pa.int32()),
                        start=counted["start"],
                        key=counted["key"],
                        count=counted["count"],
                    )
                )
                out.append(
                    _rows(
                        LATE,
                        1,
                        metric=pa.array([index], pa.int32()),
                        count=pa.array([late], pa.int64()),
                    )
                )
            newest = pc.max(good["_time"]).as_py()
            out.append(_rows(NEWEST, 1, time=pa.array([newest], pa.int64())))
        if "_dead_value" in table.column_names:
            dead = table.filter(pc.is_valid(table["_dead_value"]))
            if dead.num_rows:
                out.append(
                    _rows(
                        DEAD,
                        dead.num_rows,
                        dead_key=dead["_dead_key"],
                        dead_value=dead["_dead_value"],
                    )
                )
        for part in out:
            yield from part.to_batches()

    return reduce


@dataclass(frozen=True)
class Reduced:
    """A count batch reduced on the executors (:func:`reduce_partition`), on the driver."""

    rows: pa.Table

    @classmethod
    def of(
        cls,
        batch: DataFrame,
        parts: Sequence[TallyPart],
        driver_max: int = 0,
        records: int | None = None,
    ) -> Reduced:
        """``batch`` reduced on the executors; or, when it is known (``records``: from the
        offset log, :func:`~clickstream.streaming.checkpoint.batch_records`) to hold at most
        ``driver_max`` records, collected and reduced on the driver by the same function (the
        same rows, without the fixed cost of a Python task per batch). Either way the batch is
        read once."""
        reduce = reduce_partition(parts)
        return cls(reduce_batch(batch, reduce, _REDUCED, driver_max, records))

    def _kind(self, kind: int) -> pa.Table:
        return self.rows.filter(pc.equal(self.rows["kind"], kind))

    def partials(self, metrics: list[str]) -> pa.Table:
        """The partial counts (:data:`~clickstream.streaming.tally.PARTIALS`), ``metric`` named by
        ``metrics`` (in the order of the parts' columns)."""
        rows = self._kind(PARTIAL)
        names = pa.array(metrics, pa.string())
        return pa.table(
            {
                "metric": pc.take(names, rows["metric"]),
                "start": rows["start"],
                "key": rows["key"],
                "count": rows["count"],
            },
            schema=PARTIALS,
        )

    def late(self, part: int | None = None) -> int:
        """Late events of one part (by its index), or of all."""
        rows = self._kind(LATE)
        if part is not None:
            rows = rows.filter(pc.equal(rows["metric"], part))
        return pc.sum(rows["count"]).as_py() or 0

    def newest(self) -> int | None:
        """The newest event time."""
        newest: int | None = pc.max(self._kind(NEWEST)["time"]).as_py()
        return newest

    def dead_letters(self) -> pa.Table:
        """The dead letters, as the rows (``key``, ``value``) of the dead-letter topic."""
        dead = self._kind(DEAD)
        return pa.table({"key": dead["dead_key"], "value": dead["dead_value"]})


def reduce_batch(
    batch: DataFrame,
    reduce: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
    schema: pa.Schema,
    driver_max: int = 0,
    records: int | None = None,
) -> pa.Table:
    """``batch`` reduced by ``reduce`` (a ``mapInArrow`` function yielding ``schema`` rows) on
    the executors, each task its partition, the driver getting only what the tasks yield; or,
    when it is known (``records``: from the offset log,
    :func:`~clickstream.streaming.checkpoint.batch_records`) to hold at most ``driver_max``
    records, collected and reduced on the driver by the same function (the same rows, without
    the fixed cost of a Python task per batch). Either way the batch is read once."""
    if driver_max > 0 and records is not None and records <= driver_max:
        small = batch.toArrow()
        out = list(reduce(iter(small.to_batches()))) if small.num_rows else []
        return pa.Table.from_batches(out, schema=schema)
    from pyspark.sql.pandas.types import from_arrow_schema

    return batch.mapInArrow(reduce, from_arrow_schema(schema)).toArrow().cast(schema)


def _rows(kind: int, n: int, **columns: pa.Array | pa.ChunkedArray) -> pa.Table:
    data = {f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in _REDUCED if f.name != "kind"}
    data = {name: pc.cast(col, _REDUCED.field(name).type) for name, col in data.items()}
    return pa.table({"kind": pa.array([kind] * n, pa.int32()), **data}, schema=_REDUCED)


def run_again(batch: DataFrame) -> None:
    """Run a micro-batch that was counted and written before a restart (Spark runs it again when
    the process died before its commit) through Spark, writing nothing. A count query's Spark
    state (:func:`~clickstream.streaming.counts.drop_retries`) must still be committed for it: the
    next batch reads that state, and Spark 4.2 fails a batch whose stateful tasks did not all
    commit (``STATE_STORE_COMMIT_VALIDATION_FAILED``). Cheap for a stateless query."""
    batch.write.format("noop").mode("append").save()
