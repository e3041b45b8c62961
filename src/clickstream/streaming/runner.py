"""Start a job's queries with checkpoints under ``<checkpoint_dir>/<job>/<query>``, and report
their progress: rows in, rows dropped as too late, last batch."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clickstream.errors import JobFailedError
from clickstream.settings import Settings
from clickstream.streaming import checkpoint
from clickstream.streaming.spec import Builder, JobSpec, QuerySpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming.query import StreamingQuery


def prepare_kafka(settings: Settings, wait_s: float | None = None) -> None:
    """Wait up to ``wait_s`` (default ``kafka.timeout_s``) for Kafka, then create the topics of
    the built-in scenarios that do not exist yet (the jobs read some of them)."""
    from clickstream.kafka.admin import ensure_topics, standard_topics, wait_for_cluster

    wait_for_cluster(settings, wait_s)
    ensure_topics(settings, standard_topics(settings))


@dataclass
class QueryStats:
    batches: int = 0
    input_rows: int = 0
    late_rows_dropped: int = 0
    """Events dropped as later than the watermark: by Spark's state operators, plus by the
    query's writer when it counts windows itself (``QuerySpec.late_events``)."""
    state_late_rows: int = 0
    """Those dropped by Spark's state operators."""
    last_batch_id: int | None = None


@dataclass
class RunningJob:
    spec: JobSpec
    queries: list[StreamingQuery]
    stats: dict[str, QueryStats] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, progress: dict[str, Any]) -> None:
        """Fold one progress report (``query.recentProgress``) into the stats, once per batch."""
        name = progress.get("name") or ""
        spec = next((q for q in self.spec.queries if f"{self.spec.name}.{q.name}" == name), None)
        with self._lock:
            stats = self.stats.setdefault(name, QueryStats())
            batch_id = progress.get("batchId")
            seen = stats.last_batch_id
            if batch_id is not None and seen is not None and batch_id <= seen:
                return
            stats.batches += 1
            stats.input_rows += int(progress.get("numInputRows", 0))
            stats.state_late_rows += sum(
                int(op.get("numRowsDroppedByWatermark", 0))
                for op in progress.get("stateOperators", [])
            )
            by_writer = spec.late_events() if spec is not None and spec.late_events else 0
            stats.late_rows_dropped = stats.state_late_rows + by_writer
            stats.last_batch_id = batch_id

    def poll(self) -> None:
        """Record the progress of every query so far; fail if a query died."""
        for query in self.queries:
            if not query.isActive and query.exception() is not None:
                self.await_all()
            self.collect(query)

    def await_all(self, timeout: int | None = None) -> None:
        """Wait for every query (``available_now`` ones end by themselves)."""
        for query in self.queries:
            try:
                query.awaitTermination(timeout)
            except Exception as exc:
                self.stop()
                raise JobFailedError(f"query {query.name} failed: {root_cause(exc)}") from exc
            finally:
                self.collect(query)

    def collect(self, query: StreamingQuery) -> None:
        for progress in query.recentProgress:
            self.record(progress)

    def stop(self) -> None:
        for query in self.queries:
            query.stop()


_ERROR_LINE = re.compile(r"^(?:Caused by: )?[\w.$]*(?:Error|Exception)\w*: \S")
_WRAPPERS = ("An error occurred while calling", "An exception was raised by the Python Proxy")


def root_cause(exc: BaseException) -> str:
    """What made a query fail, in one line: the last ``SomethingError: message`` (or Java
    ``Caused by: ...``) line of its message, which for an error in a ``foreachBatch`` function
    is the Python error, or the deepest Java error under a call it made into Spark; py4j's own
    wrapper lines say nothing and are skipped. Without such a line (an error of Spark's own:
    ``Exception thrown in awaitResult``), the message's first line and the deepest Java
    exception under it."""
    text = str(exc)
    found = [
        line.removeprefix("Caused by: ")
        for line in (raw.strip() for raw in text.splitlines())
        if _ERROR_LINE.match(line) and not any(w in line for w in _WRAPPERS)
    ]
    if found:
        return found[-1]
    first = (text.splitlines() or [type(exc).__name__])[0]
    deepest = _deepest_java_cause(exc)
    return f"{first} (caused by {deepest})" if deepest and deepest not in first else first


def _deepest_java_cause(exc: BaseException) -> str | None:
    throwable = getattr(exc, "_origin", None)  # pyspark's CapturedException keeps the Java one
    depth, last = 0, None
    while throwable is not None and depth < 32:
        last, throwable, depth = throwable, throwable.getCause(), depth + 1
    if last is None or depth < 2:
        return None
    return " ".join(str(last.toString()).split("\n", 2)[:2]).strip() or None


def start_job(
    spark: SparkSession,
    settings: Settings,
    build: Builder,
    *,
    available_now: bool = False,
    **options: Any,
) -> RunningJob:
    """Build a job and start its queries (``available_now``: process what is there, stop)."""
    spec = build(spark, settings, **options)
    job = RunningJob(spec, [])
    for query in spec.queries:
        job.queries.append(_start_query(spec, query, settings, available_now))
    return job


def start_jobs(
    spark: SparkSession,
    settings: Settings,
    builds: Sequence[Builder],
    running: list[RunningJob],
    *,
    say: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Start long-running jobs (``builds``) into ``running`` (filled as queries start, so a caller
    interrupted half-way can stop what runs), staggered: each query starts once the one before
    finished its first micro-batch (at most ``jobs.staggered_start_s``), in the order of
    ``builds``, then says ``all N queries started``. Returns early when ``stop`` is set."""
    to_build = list(builds)
    queue: list[tuple[RunningJob, QuerySpec]] = []
    stop = stop or threading.Event()

    def build_next() -> None:
        job = RunningJob(to_build.pop(0)(spark, settings), [])
        running.append(job)
        queue.extend((job, q) for q in job.spec.queries)

    def launch(job: RunningJob, query: QuerySpec) -> StreamingQuery:
        started = _start_query(job.spec, query, settings, available_now=False)
        job.queries.append(started)
        if say is not None:
            say(f"query {started.name} started")
        return started

    build_next()
    while queue and not stop.is_set():
        started = launch(*queue.pop(0))
        if to_build:  # build the next job while this query runs its first batch
            build_next()
        if settings.jobs.staggered_start_s:
            _await_first_batch(started, settings.jobs.staggered_start_s, stop)
    if say is not None and not stop.is_set():  # what bench/capacity.py waits for
        say(f"all {sum(len(job.queries) for job in running)} queries started")


def _await_first_batch(query: StreamingQuery, timeout: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    while query.isActive and query.lastProgress is None and time.monotonic() < deadline:
        if stop.wait(0.1):
            return


def _start_query(
    spec: JobSpec, query: QuerySpec, settings: Settings, available_now: bool
) -> StreamingQuery:
    location = checkpoint.query_location(settings, spec.name, query.name)
    checkpoint.clear_unfinished_writes(checkpoint.store(location, query.frame.sparkSession))
    writer = (
        query.frame.writeStream.queryName(f"{spec.name}.{query.name}")
        .outputMode(query.output_mode)
        .foreachBatch(query.write_batch)
        .option("checkpointLocation", location)
    )
    interval = settings.jobs.trigger_s if query.trigger_s is None else query.trigger_s
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime=f"{interval} seconds")
    )
    return writer.start()


def lock_checkpoints(settings: Settings) -> None:
    """Two writers on one checkpoint corrupt it: take the lock of a local checkpoint folder
    (released when this process exits), or fail naming the process that holds it."""
    from clickstream.lock import checkpoints_lock

    local = checkpoint.local_root(settings)
    if local is not None:
        checkpoints_lock(local, "clickstream jobs run").acquire()


def run_jobs(
    settings: Settings,
    builds: Sequence[Builder],
    *,
    available_now: bool = False,
    master: str | None = None,
    wait_for_kafka: float | None = None,
    say: Callable[[str], None] = print,
    locked: bool = False,
) -> None:
    """Run jobs (``builds``, see :func:`clickstream.jobs.pick`) in one Spark session until
    SIGINT/SIGTERM (or until caught up, with ``available_now``), then report each query's rows.
    The loop of ``clickstream jobs run`` and of ``spark-submit`` (:mod:`clickstream.jobs.submit`);
    ``master`` overrides ``spark.master`` (spark-submit's ``--master`` is already the session's);
    ``locked``: the caller holds :func:`lock_checkpoints` already."""
    from clickstream.signals import Stopped, stop_signals
    from clickstream.spark.session import get_spark, stop_spark, write_class_archive

    if not locked:
        lock_checkpoints(settings)
    if master:
        settings = settings.model_copy(
            update={"spark": settings.spark.model_copy(update={"master": master})}
        )
    # Spark's start (the connector's download, the JVM) and the wait for Kafka block for up to
    # minutes: a stop there raises Stopped, and what was started is ended on the way out.
    with stop_signals() as stop:
        try:
            with stop.raising():
                spark = get_spark(settings, progress=say)
                try:
                    prepare_kafka(settings, wait_for_kafka)
                except BaseException:
                    stop_spark(spark)
                    raise
        except Stopped:
            say("stopped while starting: no job ran")
            return
    running: list[RunningJob] = []
    on = spark.sparkContext.master
    # The first run with Spark's class-data sharing writes its archive once the jobs have run
    # their first batches (they have loaded what a run loads), beside the jobs, not at the end:
    # a stop does not wait for it.
    archive = threading.Thread(target=write_class_archive, args=(spark,), daemon=True)
    try:
        if available_now:
            for build in builds:
                job = start_job(spark, settings, build, available_now=True)
                running.append(job)
                say(f"job {job.spec.name}: {len(job.queries)} queries started on {on}")
            for job in running:
                job.await_all()
            archive.start()
        else:
            with stop_signals() as stop:
                say(f"starting jobs {', '.join(_names(builds))} on {on}")
                start_jobs(spark, settings, builds, running, say=say, stop=stop)
                if not stop.is_set():
                    archive.start()
                while not stop.wait(1.0):
                    for job in running:
                        job.poll()
    finally:
        for job in running:
            job.stop()
        if archive.is_alive():
            archive.join(ARCHIVE_WAIT_S)
    for job in running:
        for query in job.queries:
            job.collect(query)
        for query_name, stats in sorted(job.stats.items()):
            say(
                f"{query_name}: {stats.input_rows} rows in {stats.batches} batches, "
                f"{stats.late_rows_dropped} late events dropped"
            )
    stop_spark(spark)


ARCHIVE_WAIT_S = 10.0
"""How long the end of a run waits for Spark's class-data archive being written."""


def _names(builds: Sequence[Builder]) -> list[str]:
    """The job names of ``builds`` (a job module's ``build`` sits beside its ``NAME``)."""
    return [getattr(sys.modules.get(b.__module__), "NAME", b.__module__) for b in builds]
