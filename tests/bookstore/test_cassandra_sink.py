"""The Cassandra sink writes from the executors: its settings travel into the tasks as plain
values, and the driver never opens a writing session. Who wrote is read from Cassandra's own
list of its clients (``system_views.clients``: each connection's port and request count), the
port's process from Linux's table of sockets."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark import cloudpickle

from clickstream.settings import CassandraSettings
from clickstream.sinks import cassandra as sink
from tests.bookstore.conftest import cassandra_settings
from tests.bookstore.helpers import make_events
from tests.bookstore.test_cassandra import expected, query, stored
from tests.cassandra_node import CassandraNode
from tests.conftest import child_pids


def test_the_task_closure_pickles_with_plain_settings_and_hides_the_password() -> None:
    settings = CassandraSettings(
        contact_points="10.0.0.1,10.0.0.2",
        username="writer",
        password="s3cret",
        local_dc="dc1",
    )
    target = sink.CassandraEvents(settings).target
    assert target.password == "s3cret"
    assert "s3cret" not in repr(target)
    assert repr(target) == "Target(bookstore.events at 10.0.0.1:9042,10.0.0.2:9042)"
    again = pickle.loads(pickle.dumps(target))
    assert again == target
    assert hash(again) == hash(target)
    writer = cloudpickle.loads(cloudpickle.dumps(sink.partition_writer(target)))  # type: ignore[no-untyped-call]
    assert [cell.cell_contents for cell in writer.__closure__] == [target]


def connections_to(port: int) -> dict[int, int]:
    """Every open TCP connection to 127.0.0.1:``port``: the client's port -> the PID holding it."""
    inodes: dict[str, int] = {}  # socket inode -> the client's port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:  # established
                inodes[inode] = int(local.rsplit(":", 1)[1], 16)
    holders: dict[int, int] = {}
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            holders[inodes[link[8:-1]]] = int(fd.parts[2])
    return holders


def requests_by(node: CassandraNode, ports: set[int]) -> dict[int, int]:
    """Cassandra's count of requests on each of its client connections from ``ports``."""
    rows = query(node, "SELECT port, request_count FROM system_views.clients")
    return {r.port: r.request_count for r in rows if r.port in ports}


@pytest.mark.slow
def test_partitions_are_written_by_the_executors_not_the_driver(
    spark: Any, cassandra: CassandraNode
) -> None:
    c = cassandra_settings(cassandra)
    events = make_events(400, seed=7)
    rows = [
        (e.event_id, e.event_type, datetime.fromtimestamp(e.event_time / 1000, UTC), e.user_id,
         e.book_id)
        for e in events
    ]  # fmt: skip
    batch = spark.createDataFrame(
        rows, "event_id string, event_type string, event_time timestamp, user_id string, "
        "book_id string",
    ).repartition(4)  # fmt: skip
    events_sink = sink.CassandraEvents(c)
    # The Python workers may already hold sessions of earlier tests: count from here.
    before = requests_by(cassandra, set(connections_to(cassandra.port)))

    assert events_sink.write(batch, 0) == len(events)
    assert events_sink.write(batch, 0) == len(events)  # a replay: the same rows again
    assert stored(cassandra, c) == expected(events)
    # Local mode runs the tasks in Python workers of their own, children of Spark's JVM: they
    # keep their sessions open, and made the 800 INSERTs. This process (the driver) created
    # the table, but holds no connection to Cassandra.
    holders = connections_to(cassandra.port)
    driver = os.getpid()
    assert driver not in holders.values(), holders
    workers = child_pids(driver)
    ports = {port for port, pid in holders.items() if pid in workers}
    assert ports, holders
    after = requests_by(cassandra, ports)
    made = sum(n - before.get(port, 0) for port, n in after.items())
    assert made >= 2 * len(events), (before, after)
