"""The Cassandra sink writes from the executors: its settings travel into the tasks as plain
values, and the driver never opens a writing session."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from pyspark import cloudpickle

from clickstream.settings import CassandraSettings
from clickstream.sinks import cassandra as sink
from tests.bookstore.conftest import cassandra_settings
from tests.bookstore.helpers import make_events
from tests.bookstore.test_cassandra import expected, stored
from tests.cassandra_node import CassandraNode


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

    assert events_sink.write(batch, 0) == len(events)
    assert events_sink.write(batch, 0) == len(events)  # a replay: the same rows again
    assert stored(cassandra, c) == expected(events)
    # Local mode runs the tasks in Python workers of their own: this process (the driver)
    # created the table, but opened no writing session.
    assert not any(t.keyspace == c.keyspace for t in sink._sessions)
