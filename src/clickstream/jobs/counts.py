"""Windowed counts, the generic part: count events per value of a field in event-time windows.

A :class:`Measure` names a metric and the column whose values are counted. Windows are tumbling
(``window_s``) or sliding (a window starts every ``slide_s``), on event time with a watermark;
events later than the watermark are dropped and counted.

:func:`live_counts` is the query of the count jobs. Spark reads and parses each micro-batch
(statelessly: no shuffle, no state store) and each task reduces its events to partial counts
per (metric, window, key) (:func:`~clickstream.jobs.tally.window_partials`, in
``mapInArrow``), so only those partials reach the driver, whatever the number of events. The
driver adds them to the counts of the open windows (:mod:`clickstream.jobs.tally`) and writes
the windows it changed with their count so far, so a window reaches the result topic one
trigger after its first event instead of after the watermark passes it. The same batch's
malformed records go to the dead-letter topic: one read and one parse of the topic for both.
One reduction can feed several tallies (:class:`TallyPart`, :class:`Reduced`): the songs job
counts its minute, hour and all-time windows in one ``mapInArrow``.

With event ids (``web-live``), a task also sends each event's id and time: the driver knows
which ids were counted before (:meth:`~clickstream.jobs.tally.WindowTally.dedup`); when some
were, the few events carrying them are read again and their partials taken back.

The newest record of a ``(metric, window_start, key)`` is the count; the warehouse table is
upserted on that key, and a replayed batch rewrites the same counts (see
:mod:`clickstream.events.results`).

:func:`window_distinct` (distinct visitors, not a sum) stays a Spark stateful aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.jobs import checkpoint
from clickstream.jobs.parse import dead_letter_key, dead_letter_value
from clickstream.jobs.reduce import Reduced, TallyPart
from clickstream.jobs.spec import QuerySpec
from clickstream.jobs.tally import WindowTally, window_partials
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import DriverKafkaSink
from clickstream.sinks.results_topic import ResultsTopic

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
    location = checkpoint.query_location(settings, job, name)
    query = checkpoint.store(location, parsed.sparkSession)
    if checkpoint.has_state(query):
        raise ConfigError(
            f"the checkpoint {location} was written by the Spark stateful count query of an "
            "earlier clickstream version: delete it (the counts already written stay; those of "
            "windows still open start again)"
        )
    tally = WindowTally.open(
        windows.size_s,
        windows.slide_s,
        windows.watermark_s,
        checkpoint.tally_store(query),
        dedup_s=settings.jobs.dedup_s,
    )
    committed = checkpoint.committed_batches(query)
    if committed and not tally.has_snapshot:
        raise ConfigError(
            f"the checkpoint {location} has {len(committed)} committed batches but no count "
            f"tally ({checkpoint.join(location, checkpoint.TALLY)} is missing or empty): the "
            "windows still open would count again from zero and overwrite correct counts. "
            "Restore that folder from where it was, or delete the checkpoint to count the "
            "topic again from its start"
        )
    writer = CountsWriter(settings, [m.metric for m in measures], tally, query, dead_letters=dead)
    return QuerySpec(
        name,
        parsed.select(*columns),
        writer,
        "append",
        settings.jobs.count_trigger_s,
        late_events=lambda: tally.late_events,
    )


class CountsWriter:
    """The ``foreachBatch`` function of :func:`live_counts`: reduces the batch to partial counts
    on the executors, merges them into the tally, dead-letters the bad records, writes the
    changed counts, then commits the tally."""

    def __init__(
        self,
        settings: Settings,
        metrics: list[str],
        tally: WindowTally,
        query: checkpoint.Store,
        *,
        dead_letters: bool,
    ) -> None:
        self.metrics = metrics
        self.query = query
        self.tally = tally
        self.driver_max = settings.jobs.driver_reduce_max
        self.results = ResultsTopic(settings)
        self.dead = (
            DriverKafkaSink(settings.topics.dead_letter, settings=settings)
            if dead_letters
            else None
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        tally = self.tally
        if batch_id <= tally.batch_id:
            return  # counted and written before a restart
        has_ids = "_id" in batch.columns
        columns = tuple(f"_m{i}" for i in range(len(self.metrics)))
        part = TallyPart(columns, tally.size_ms, tally.slide_ms, tally.watermark_ms)
        records = checkpoint.batch_records(self.query, batch_id)
        reduced = Reduced.of(batch, [part], has_ids, self.driver_max, records)
        partials = reduced.partials(self.metrics)
        late = reduced.late()
        newest = reduced.newest()
        new_ids: dict[str, int] = {}
        duplicates = 0
        if has_ids:
            ids = reduced.ids()
            fresh, new_ids = tally.dedup(ids["id"], ids["time"])
            duplicates = fresh.count(False)
            if new_ids:
                newest = max(newest or -(2**63), max(new_ids.values()))
            if duplicates:
                again = {i for i, f in zip(ids["id"].to_pylist(), fresh, strict=True) if not f}
                taken, taken_late = self._uncount(batch, again)
                partials = pa.concat_tables([partials, taken])
                late -= taken_late
        update = tally.merge(batch_id, partials, late, newest, new_ids, duplicates)
        if self.dead is not None:
            self.dead.send(reduced.dead_letters())
        self.results.write_counts(update.results(tally.size_ms))
        tally.commit(update)

    def _uncount(self, batch: DataFrame, again: set[str]) -> tuple[pa.Table, int]:
        """Negative partials of the events not to count: the copies of ids in ``again`` that
        :meth:`WindowTally.dedup` turned down (read again, in the same order)."""
        columns = ["_time", "_id", *(f"_m{i}" for i in range(len(self.metrics)))]
        rows = batch.where(F.col("_id").isin(list(again))).select(*columns).toArrow()
        rows = rows.filter(pc.is_valid(rows["_time"]))
        fresh, _ = self.tally.dedup(rows["_id"], rows["_time"])
        drop = rows.filter(pc.invert(pa.array(fresh, pa.bool_())))
        keys = [(m, drop[f"_m{i}"]) for i, m in enumerate(self.metrics)]
        t = self.tally
        taken, late = window_partials(drop["_time"], keys, t.size_ms, t.slide_ms, t.watermark_ms)
        return taken.set_column(3, "count", pc.negate(taken["count"])), late


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
