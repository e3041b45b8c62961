"""The bookstore job into a real Apache Cassandra 5.0: types and values, a replayed micro-batch,
Cassandra going away in the middle of a stream, TLS, and the local datacenter."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clickstream.errors import JobFailedError
from clickstream.jobs import builder
from clickstream.settings import CassandraSettings, Settings
from clickstream.sinks.cassandra import Target, connect, forget, rows_to_params, write_rows
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.runner import start_job
from tests.bookstore.conftest import bookstore_settings, cassandra_settings
from tests.bookstore.helpers import make_events, send
from tests.cassandra_node import CassandraNode
from tests.secure.certs import Certificates

pytestmark = pytest.mark.slow


def run(spark: Any, settings: Settings) -> None:
    start_job(spark, settings, builder("bookstore"), available_now=True).await_all(300)


def query(node: CassandraNode, cql: str) -> list[Any]:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    cluster = Cluster(
        ["127.0.0.1"], port=node.port, auth_provider=PlainTextAuthProvider("cassandra", "cassandra")
    )
    try:
        return list(cluster.connect().execute(cql))
    finally:
        cluster.shutdown()


def stored(node: CassandraNode, c: CassandraSettings) -> dict[str, tuple[Any, ...]]:
    rows = query(node, f"SELECT * FROM {c.keyspace}.{c.table}")
    return {str(r.event_id): (r.event_type, r.event_time, r.user_id, r.book_id) for r in rows}


def params(events: list[Any]) -> list[tuple[Any, ...]]:
    columns = ("event_id", "event_type", "event_time", "user_id", "book_id")
    return rows_to_params({c: [getattr(e, c) for e in events] for c in columns})


def expected(events: list[Any]) -> dict[str, tuple[Any, ...]]:
    # The driver returns naive UTC datetimes for a Cassandra timestamp.
    return {
        e.event_id: (
            e.event_type,
            datetime.fromtimestamp(e.event_time / 1000, UTC).replace(tzinfo=None),
            e.user_id,
            e.book_id,
        )
        for e in events
    }


def test_events_land_in_cassandra_with_the_seeds_types(
    spark: Any, settings: Settings, tmp_path: Path, cassandra: CassandraNode
) -> None:
    c = cassandra_settings(cassandra)
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    events = make_events(300, seed=2)
    send(s, events)
    run(spark, s)

    columns = {
        r.column_name: r.type
        for r in query(
            cassandra,
            "SELECT column_name, type FROM system_schema.columns "
            f"WHERE keyspace_name = '{c.keyspace}' AND table_name = 'events'",
        )
    }
    assert columns == {
        "event_id": "uuid",
        "event_type": "text",
        "event_time": "timestamp",
        "user_id": "text",
        "book_id": "text",
    }
    rows = query(cassandra, f"SELECT event_id FROM {c.keyspace}.events LIMIT 1")
    assert isinstance(rows[0].event_id, uuid.UUID)
    assert stored(cassandra, c) == expected(events)


def test_a_replayed_micro_batch_leaves_no_duplicates(
    spark: Any, settings: Settings, tmp_path: Path, cassandra: CassandraNode
) -> None:
    c = cassandra_settings(cassandra)
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    events = make_events(150, seed=3)
    send(s, events)
    run(spark, s)
    table = f"{c.keyspace}.{c.table}"
    first = {
        r.event_id: r.w
        for r in query(cassandra, f"SELECT event_id, writetime(user_id) AS w FROM {table}")
    }

    # A crash after the batch was written but before Spark committed it: the commit is gone,
    # so the next start runs the same batch (same offsets) again.
    commits = Path(query_location(s, "bookstore", "events")) / "commits"
    last = max(commits.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    last.unlink()
    (commits / f".{last.name}.crc").unlink(missing_ok=True)
    run(spark, s)

    again = {
        r.event_id: r.w
        for r in query(cassandra, f"SELECT event_id, writetime(user_id) AS w FROM {table}")
    }
    assert again.keys() == first.keys()
    assert all(again[k] > first[k] for k in first)  # the batch really was written again
    assert stored(cassandra, c) == expected(events)
    assert query(cassandra, f"SELECT count(*) FROM {table}")[0].count == len(events)


def test_cassandra_stopped_mid_stream_fails_clearly_then_catches_up(
    spark: Any, settings: Settings, tmp_path: Path, cassandra: CassandraNode
) -> None:
    c = cassandra_settings(cassandra, retries=2, retry_backoff_s=0.2, timeout_s=3.0)
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    before, during = make_events(100, seed=4), make_events(120, seed=5, start_ms=1_767_230_000_000)
    send(s, before)
    run(spark, s)
    assert len(stored(cassandra, c)) == len(before)
    # A writer's session kept across the outage, as a Spark Python worker keeps it.
    target = Target.of(c)
    assert write_rows(target, params(before[:5])) == (0, "")

    cassandra.stop()
    try:
        send(s, during)
        with pytest.raises(JobFailedError) as failed:
            run(spark, s)
        message = str(failed.value)
        assert "cannot write 120 events to Cassandra" in message
        assert f"127.0.0.1:{cassandra.port} after 3 attempts" in message
        lost, why = write_rows(target, params(during[:5]))
        assert (lost, why.split(":")[0]) == (5, "NoHostAvailable")
    finally:
        cassandra.start()

    # Right after the restart, not after the driver's reconnection backoff (up to minutes).
    assert write_rows(target, params(during[:5])) == (0, "")
    run(spark, s)
    assert stored(cassandra, c) == expected(before + during)
    forget(target)


def test_tls_and_an_explicit_datacenter(
    spark: Any,
    settings: Settings,
    tmp_path: Path,
    cassandra: CassandraNode,
    cassandra_certificates: Certificates,
) -> None:
    c = cassandra_settings(
        cassandra, tls=True, tls_ca_file=cassandra_certificates.ca.cert, local_dc="datacenter1"
    )
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    events = make_events(60, seed=6)
    send(s, events)
    run(spark, s)
    assert stored(cassandra, c) == expected(events)

    # The node takes plain connections too: it must say this one is encrypted.
    cluster, session = connect(Target.of(c))
    try:
        clients = list(
            session.execute("SELECT ssl_enabled, ssl_protocol FROM system_views.clients")
        )
    finally:
        cluster.shutdown()
    assert any(r.ssl_enabled and r.ssl_protocol.startswith("TLS") for r in clients), clients


def test_a_certificate_from_another_authority_fails_clearly(
    spark: Any,
    settings: Settings,
    tmp_path: Path,
    cassandra: CassandraNode,
    cassandra_certificates: Certificates,
) -> None:
    c = cassandra_settings(
        cassandra, tls=True, tls_ca_file=cassandra_certificates.rogue_ca.cert, retries=0
    )
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    send(s, make_events(10, seed=7))
    with pytest.raises(JobFailedError) as failed:
        run(spark, s)
    message = str(failed.value)
    assert f"cannot write 10 events to Cassandra cassandra:{c.keyspace}.events" in message
    assert "certificate verify failed" in message


def test_a_datacenter_the_cluster_does_not_have_fails_at_once(
    spark: Any, settings: Settings, tmp_path: Path, cassandra: CassandraNode
) -> None:
    c = cassandra_settings(cassandra, local_dc="elsewhere", retries=5, retry_backoff_s=5.0)
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    send(s, make_events(10, seed=8))
    began = time.monotonic()
    with pytest.raises(JobFailedError) as failed:
        run(spark, s)
    assert time.monotonic() - began < 60  # not 5 retries of 5, 10, 20 ... s
    message = str(failed.value)
    assert "cassandra.local_dc is 'elsewhere'" in message
    assert "datacenter(s) datacenter1: set CLICKSTREAM_CASSANDRA_LOCAL_DC" in message
