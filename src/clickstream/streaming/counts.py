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

:func:`~clickstream.streaming.distinct.window_distinct` (distinct visitors, not a sum) stays a
Spark stateful aggregation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from clickstream.errors import ConfigError
from clickstream.events.results import WindowCount, counts_table
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import KafkaTopic
from clickstream.sinks.results_topic import ResultsTopic
from clickstream.streaming import checkpoint
from clickstream.streaming.parse import dead_letter_key, dead_letter_value
from clickstream.streaming.reduce import Reduced, TallyPart, run_again
from clickstream.streaming.spec import QuerySpec
from clickstream.streaming.tally import TallyUpdate, WindowTally

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from clickstream.sinks.base import Sink


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


@dataclass(frozen=True)
class Tally:
    """One tally of a count query: it counts the values of ``columns`` (one metric each, named
    by ``metrics``) in ``windows``, kept in ``tally/`` (or the folder ``folder`` for a query
    keeping several). With ``all_time_end`` it is a running total: every event counted at time
    0 in one window that never closes, written as the window ``[0, all_time_end)``."""

    metrics: tuple[str, ...]
    columns: tuple[str, ...]
    windows: Windows
    folder: str = checkpoint.TALLY
    all_time_end: int | None = None


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
    tally = Tally(
        tuple(m.metric for m in measures),
        tuple(f"_m{i}" for i in range(len(measures))),
        windows,
    )
    return count_query(
        frame,
        [tally],
        settings,
        job=job,
        name=name,
        dead_letters=dead,
        operator=DEDUP_OPERATOR if event_id is not None else None,
    )


def count_query(
    frame: DataFrame,
    tallies: list[Tally],
    settings: Settings,
    *,
    job: str,
    name: str = "counts",
    dead_letters: bool = True,
    operator: str | None = None,
    after_write: Callable[[int], None] | None = None,
) -> QuerySpec:
    """The query counting ``frame`` (``_time``, the tallies' columns, and ``_dead_key`` /
    ``_dead_value`` with ``dead_letters``) into ``tallies``, through one :class:`CountsWriter`.

    Refuses, with what to do, a checkpoint that an earlier version wrote with other Spark state
    than ``operator`` (Spark's name of the query's stateful operator, if any), and one with
    committed batches whose tallies are lost. ``after_write`` is called with the number of
    counts written by each batch."""
    location = checkpoint.query_location(settings, job, name)
    query = checkpoint.store(location, frame.sparkSession)
    committed = checkpoint.committed_batches(query)
    found = checkpoint.state_operator(query)
    if found != operator and (committed or found is not None):
        kept = "no Spark state" if found is None else f"the state of {found or 'a stateful query'}"
        raise ConfigError(
            f"the checkpoint {location} was written by an earlier clickstream version, which "
            f"kept {kept}: delete it (the counts already written stay; those of windows still "
            "open start again)"
        )
    writer = CountsWriter.open(
        query,
        tallies,
        settings,
        committed=len(committed),
        dead_letters=dead_letters,
        after_write=after_write,
    )
    return QuerySpec(
        name,
        frame,
        writer,
        "append",
        settings.jobs.count_trigger_s,
        late_events=lambda: writer.late_events,
    )


class CountsWriter:
    """The ``foreachBatch`` function of a count query: reduces the batch to partial counts on
    the executors (one ``mapInArrow`` for every tally), merges them into each tally that has
    not counted the batch yet, writes the changed counts (the result topic before the
    warehouse), dead-letters the bad records, then commits the tallies. A batch every tally
    counted before a restart only runs through Spark again
    (:func:`~clickstream.streaming.reduce.run_again`)."""

    def __init__(
        self,
        tallies: list[tuple[Tally, WindowTally]],
        query: checkpoint.Store,
        results: Sink,
        dead: Sink | None,
        *,
        driver_max: int = 0,
        after_write: Callable[[int], None] | None = None,
    ) -> None:
        self.tallies = tallies
        self.query = query
        self.results = results
        self.dead = dead
        self.driver_max = driver_max
        self.after_write = after_write

    @classmethod
    def open(
        cls,
        query: checkpoint.Store,
        tallies: list[Tally],
        settings: Settings,
        *,
        committed: int,
        dead_letters: bool = True,
        after_write: Callable[[int], None] | None = None,
    ) -> CountsWriter:
        """The writer of the count query whose checkpoint is ``query``, with its tallies as
        they were saved; refuses a checkpoint with ``committed`` batches but a tally lost."""
        opened = [
            (
                spec,
                WindowTally.open(
                    spec.windows.size_s,
                    spec.windows.slide_s,
                    spec.windows.watermark_s,
                    checkpoint.tally_store(query, spec.folder),
                ),
            )
            for spec in tallies
        ]
        lost = [spec.folder for spec, tally in opened if not tally.has_snapshot]
        if committed and lost:
            where = ", ".join(checkpoint.join(query.location, folder) for folder in lost)
            raise ConfigError(
                f"the checkpoint {query.location} has {committed} committed batches but no "
                f"count tally in {where} (missing or empty): the windows still open would "
                "count again from zero and overwrite correct counts. Restore that folder from "
                "where it was, or delete the checkpoint to count the topic again from its start"
            )
        return cls(
            opened,
            query,
            ResultsTopic.from_settings(settings),
            KafkaTopic.dead_letters(settings) if dead_letters else None,
            driver_max=settings.jobs.driver_reduce_max,
            after_write=after_write,
        )

    @property
    def late_events(self) -> int:
        return sum(tally.late_events for _, tally in self.tallies)

    def parts(self, batch_id: int) -> tuple[list[tuple[Tally, WindowTally]], list[TallyPart]]:
        """The tallies that have not counted batch ``batch_id``, and what a task counts for
        each: its columns in its windows, late against its watermark as of now."""
        pending = [(spec, t) for spec, t in self.tallies if batch_id > t.batch_id]
        parts = [
            TallyPart(
                spec.columns,
                t.size_ms,
                t.slide_ms,
                t.watermark_ms,
                at_zero=spec.all_time_end is not None,
            )
            for spec, t in pending
        ]
        return pending, parts

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        pending, parts = self.parts(batch_id)
        if not pending:  # counted and written before a restart
            run_again(batch)
            return
        records = checkpoint.batch_records(self.query, batch_id)
        reduced = Reduced.of(batch, parts, self.driver_max, records)
        partials = reduced.partials([m for spec, _ in pending for m in spec.metrics])
        newest = reduced.newest()
        updates: list[tuple[WindowTally, TallyUpdate]] = []
        counts: list[WindowCount] = []
        for index, (spec, tally) in enumerate(pending):
            mine = partials
            if len(pending) > 1:
                mine = partials.filter(pc.is_in(partials["metric"], pa.array(spec.metrics)))
            if spec.all_time_end is None:
                update = tally.merge(batch_id, mine, reduced.late(index), newest)
                counts += update.results(tally.size_ms)
            else:
                update = tally.merge(batch_id, mine, 0, None if newest is None else 0)
                counts += [
                    WindowCount(
                        metric=c.metric,
                        window_start=0,
                        window_end=spec.all_time_end,
                        key=c.key,
                        count=c.count,
                    )
                    for c in update.results(tally.size_ms)
                ]
            updates.append((tally, update))
        # How fresh the counts are: the newest event time counted so far (an all-time tally
        # keeps every event at time 0: the batch's own newest stands in for it).
        known = [update.newest_ms for (spec, _), (_, update) in zip(pending, updates, strict=True)
                 if spec.all_time_end is None and update.newest_ms is not None]  # fmt: skip
        freshest = max([*known, *([] if newest is None else [newest])], default=None)
        for count in counts:
            count.newest_event_ms = freshest
        # The counts first (the dashboard hears of them), then the batch's dead letters: the
        # tallies are committed after both, so a batch cut short is run again whole.
        written = self.results.write(counts_table(counts), batch_id)
        if self.dead is not None:
            self.dead.write(reduced.dead_letters(), batch_id)
        if self.after_write is not None:
            self.after_write(written)
        for tally, update in updates:
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
