"""Windowed counts, the generic part: count events per value of a field in event-time windows.

A :class:`Measure` names a metric and the column whose values are counted. Windows are tumbling
(``window_s``) or sliding (a window starts every ``slide_s``), on event time with a watermark;
events later than the watermark are dropped and counted.

:func:`live_counts` is the query of the count jobs. Spark reads and parses each micro-batch
(statelessly: no shuffle, no state store) and each task reduces its events to partial counts
per (metric, window, key) (:func:`~clickstream.streaming.tally.window_partials`, in
``mapInArrow``), so only those partials reach the driver, whatever the number of events. The
driver adds them to the counts of the open windows (:mod:`clickstream.streaming.tally`) and writes
the windows it changed with their count so far, so a window reaches the result topic one
trigger after its first event instead of after the watermark passes it. The same batch's
malformed records go to the dead-letter topic: one read and one parse of the topic for both.
One reduction can feed several tallies (:class:`TallyPart`, :class:`Reduced`): the songs job
counts its minute, hour and all-time windows in one ``mapInArrow``.

With event ids (``web-live``), a client's retries are removed before the reduction by Spark's
``dropDuplicatesWithinWatermark`` (:func:`drop_retries`): the ids counted lately are Spark state
on the executors, partitioned by id, versioned with the checkpoint. Nothing per event reaches
the driver.

The newest record of a ``(metric, window_start, key)`` is the count; the warehouse table is
upserted on that key, and a replayed batch rewrites the same counts (see
:mod:`clickstream.events.results`).

:func:`window_distinct` (distinct visitors, not a sum) stays a Spark stateful aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import DriverKafkaSink
from clickstream.sinks.results_topic import ResultsTopic
from clickstream.streaming import checkpoint
from clickstream.streaming.parse import dead_letter_key, dead_letter_value
from clickstream.streaming.reduce import Reduced, TallyPart, run_again
from clickstream.streaming.spec import QuerySpec
from clickstream.streaming.tally import WindowTally

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


DEDUP_OPERATOR = "dedupeWithinWatermark"
"""Spark's name, in a checkpoint's state metadata, of the operator of :func:`drop_retries`."""
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
    """The count query over ``parsed`` records (:func:`~clickstream.streaming.parse.parse_json`):
    good records are counted by ``time_ms`` (event time, epoch ms), once per ``event_id`` when
    given (within ``jobs.dedup_s``); bad ones go to the dead-letter topic if ``dead_letters`` is
    true, or a condition that holds for them."""
    good = F.col("reason").isNull()
    time = F.when(good, time_ms.cast("long"))
    columns = [time.alias("_time")]
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
    if event_id is not None:
        frame = drop_retries(
            parsed,
            columns,
            time,
            F.when(good, event_id.cast("string")),
            windows,
            settings.jobs.dedup_s,
        )
    else:
        frame = parsed.select(*columns)
    committed = checkpoint.committed_batches(query)
    operator = checkpoint.state_operator(query)
    expected = DEDUP_OPERATOR if event_id is not None else None
    if operator != expected and (committed or operator is not None):
        kept = (
            "no Spark state"
            if operator is None
            else f"the state of {operator or 'a stateful query'}"
        )
        raise ConfigError(
            f"the checkpoint {location} was written by an earlier clickstream version, which "
            f"kept {kept}: delete it (the counts already written stay; those of windows still "
            "open start again)"
        )
    tally = WindowTally.open(
        windows.size_s, windows.slide_s, windows.watermark_s, checkpoint.tally_store(query)
    )
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
        frame,
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
        if batch_id <= tally.batch_id:  # counted and written before a restart
            run_again(batch)
            return
        columns = tuple(f"_m{i}" for i in range(len(self.metrics)))
        part = TallyPart(columns, tally.size_ms, tally.slide_ms, tally.watermark_ms)
        records = checkpoint.batch_records(self.query, batch_id)
        reduced = Reduced.of(batch, [part], self.driver_max, records)
        update = tally.merge(
            batch_id, reduced.partials(self.metrics), reduced.late(), reduced.newest()
        )
        if self.dead is not None:
            self.dead.send(reduced.dead_letters())
        self.results.write_counts(update.results(tally.size_ms))
        tally.commit(update)


def drop_retries(
    parsed: DataFrame,
    columns: list[Column],
    time_ms: Column,
    event_id: Column,
    windows: Windows,
    dedup_s: int,
) -> DataFrame:
    """``parsed.select(*columns)`` without the events whose ``event_id`` came before, within
    ``dedup_s`` of event time (``time_ms``): a client's retries. Spark's
    ``dropDuplicatesWithinWatermark`` does it on the executors, its state partitioned by id.

    Records without an id (the bad ones among them, to dead-letter) are kept: each gets a key of
    its own (topic, partition, offset). Of an event sent twice in one batch the first copy is
    kept: the collector keys records by visitor, so both are in one Kafka partition, read in
    order by one task, and a shuffle keeps the order of the rows one task wrote. The operator
    drops events older than its watermark (the newest event time minus the delay) before
    looking at their ids; its delay is at least a window and the counts' watermark, so those
    events are late for the counts too (and counted as late, see
    :class:`~clickstream.streaming.runner.RunningJob`)."""
    delay_s = max(dedup_s, windows.size_s + windows.watermark_s)
    source = F.concat_ws(
        ":",
        F.lit("@"),
        F.col("_topic"),
        F.col("_partition").cast("string"),
        F.col("_offset").cast("string"),
    )
    return (
        parsed.select(
            *columns,
            F.coalesce(event_id, source).alias("_dedup"),
            F.timestamp_millis(time_ms).alias("_seen"),
        )
        .withWatermark("_seen", f"{delay_s} seconds")
        .dropDuplicatesWithinWatermark(["_dedup"])
        .drop("_dedup", "_seen")
    )


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
