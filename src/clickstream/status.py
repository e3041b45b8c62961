"""What ``clickstream status`` reports: topics, each job's lag, the newest results and how fresh
each metric is (from the result topic's newest records), whether
the collector and the dashboard answer (with the dashboard's connection count), and, while
``clickstream up`` runs on the data folder, its parts (restarts, last error).

Each part is read independently: a part that cannot be reached is reported as such, never
raised, so the command shows as much as there is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from clickstream.errors import ClickstreamError
from clickstream.kafka.admin import TopicInfo, describe_topics
from clickstream.settings import Settings
from clickstream.supervisor import UpStatus, read_state

Key = tuple[str, int]


@dataclass
class QueryLag:
    job: str
    query: str
    batches: int
    """Micro-batches committed."""
    lag: int | None
    """Records in its topics not yet processed (None when Kafka could not be asked)."""
    last_commit_s: float | None
    """Seconds since the last committed micro-batch."""


RECENT_RECORDS = 2000
"""Records read from the end of each partition of the result topic for the freshness."""


@dataclass
class Freshness:
    """How fresh a metric is, from its newest records in the result topic (epoch ms; None where
    its job does not say)."""

    newest_event_ms: int | None
    written_ms: int | None
    stale: bool
    """Its newest data (event time, else time of writing) is older than
    ``dashboard.stale_after_s``."""


@dataclass
class Report:
    kafka_error: str | None = None
    topics: list[TopicInfo] = field(default_factory=list)
    queries: list[QueryLag] = field(default_factory=list)
    last_windows: dict[str, tuple[str, int]] = field(default_factory=dict)
    """metric -> (newest window end, rows in the warehouse)."""
    freshness: dict[str, Freshness] = field(default_factory=dict)
    """metric -> how fresh it is (the dashboard's panel ages)."""
    sessions: tuple[int, str | None] | None = None
    """(sessions in the warehouse, newest session end)."""
    warehouse_error: str | None = None
    collector: str = "not running"
    dashboard: str = "not running"
    dashboard_connections: int | None = None
    up: UpStatus | None = None
    """The parts of the ``clickstream up`` running on the data folder, if one runs."""


def query_lags(settings: Settings, ends: dict[Key, int] | None) -> list[QueryLag]:
    """The lag of every query whose checkpoint is a local folder (those on a URL are left out:
    reading them needs Spark)."""
    from clickstream.streaming import checkpoint

    checkpoints = checkpoint.local_root(settings)
    if checkpoints is None:
        return []
    found = []
    for job, query, folder in checkpoint.local_queries(checkpoints):
        committed = checkpoint.committed_offsets(folder)
        batches, offsets = committed if committed else (0, {})
        lag = None
        if ends is not None and committed:
            lag = sum(max(ends.get(key, offset) - offset, 0) for key, offset in offsets.items())
        last = checkpoint.last_commit_mtime(folder)
        found.append(
            QueryLag(
                job=job,
                query=query,
                batches=batches,
                lag=lag,
                last_commit_s=time.time() - last if last is not None else None,
            )
        )
    return found


def _warehouse(settings: Settings, report: Report) -> None:
    from clickstream.events.results import TABLE
    from clickstream.sinks.duckdb_table import connect

    path = settings.duckdb_path
    if not path.exists():
        report.warehouse_error = f"no warehouse at {path} yet"
        return
    with connect(path, read_only=True, timeout=5.0) as con:
        tables = {
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        if TABLE in tables:
            rows = con.execute(
                f"SELECT metric, max(window_end)::VARCHAR, count(*) FROM {TABLE} GROUP BY metric"
                " ORDER BY metric"
            ).fetchall()
            report.last_windows = {metric: (end, n) for metric, end, n in rows}
        if "sessions" in tables:
            n, end = con.execute(
                "SELECT count(*), max(session_end)::VARCHAR FROM sessions"
            ).fetchone()  # type: ignore[misc]
            report.sessions = (int(n), end)


def freshness(settings: Settings) -> dict[str, Freshness]:
    """Each metric's newest event time and time of writing, from the last
    :data:`RECENT_RECORDS` records of each partition of ``topics.results``."""
    import msgspec
    from confluent_kafka import Consumer, TopicPartition

    from clickstream.events.results import WindowCount, later
    from clickstream.kafka.config import consumer_config
    from clickstream.kafka.offsets import partitions_of, watermarks

    topic, timeout = settings.topics.results, min(settings.kafka.timeout_s, 5.0)
    decode = msgspec.json.Decoder(WindowCount).decode
    consumer = Consumer(consumer_config(settings, None))
    events: dict[str, int | None] = {}
    written: dict[str, int | None] = {}
    try:
        marks = watermarks(consumer, partitions_of(consumer, [topic], timeout), timeout)
        for (_, partition), (low, high) in sorted(marks.items()):
            start = max(low, high - RECENT_RECORDS)
            if start >= high:
                continue
            consumer.assign([TopicPartition(topic, partition, start)])
            position, deadline = start - 1, time.monotonic() + timeout
            while position < high - 1 and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                position = msg.offset() or 0
                try:
                    row = decode(msg.value() or b"")
                except msgspec.DecodeError:
                    continue
                events[row.metric] = later(events.get(row.metric), row.newest_event_ms)
                written[row.metric] = later(written.get(row.metric), row.written_ms)
    finally:
        consumer.close()
    now = time.time_ns() // 1_000_000
    limit = settings.dashboard.stale_after_s * 1000
    found = {}
    for metric in sorted(events):
        at = events[metric] if events[metric] is not None else written[metric]
        stale = at is not None and now - at > limit
        found[metric] = Freshness(events[metric], written[metric], stale)
    return found


def _probe(url: str, token: str | None = None) -> tuple[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, timeout=2.0, headers=headers)
    except httpx.HTTPError as exc:
        return f"not running ({url}: {type(exc).__name__})", None
    if response.status_code != 200:
        return f"unhealthy ({url} answered {response.status_code})", None
    try:
        return f"up ({url})", response.json()
    except ValueError:
        return f"up ({url})", None


def gather(settings: Settings, kafka_settings: Settings | None) -> Report:
    """The report; ``kafka_settings`` is None when no Kafka cluster could be found."""
    report = Report(up=read_state(settings.data_dir))
    ends: dict[Key, int] | None = None
    if kafka_settings is None:
        report.kafka_error = "no Kafka cluster found (start one with clickstream up)"
    else:
        try:
            report.topics = describe_topics(kafka_settings)
            ends = {(t.name, p): end for t in report.topics for p, end in t.ends.items()}
            report.freshness = freshness(kafka_settings)
        except ClickstreamError as exc:
            report.kafka_error = str(exc)
    report.queries = query_lags(settings, ends)
    try:
        _warehouse(settings, report)
    except ClickstreamError as exc:
        report.warehouse_error = str(exc)
    collector = settings.collector
    report.collector, _ = _probe(f"http://{collector.host}:{collector.port}/healthz")
    dashboard = settings.dashboard
    token = dashboard.token.get_secret_value() if dashboard.token else None
    state, body = _probe(f"http://{dashboard.host}:{dashboard.port}/api/status", token)
    report.dashboard = state.replace("/api/status", "")
    if isinstance(body, dict) and isinstance(body.get("connections"), int):
        report.dashboard_connections = body["connections"]
    return report
