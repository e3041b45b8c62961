"""The counts reach the result topic (which the dashboard reads) before the warehouse upsert
ends: a slow warehouse does not hold the dashboard back, and the table still gets every count."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from clickstream.events.results import TABLE, WindowCount, counts_table
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import DuckDBTable, read_query, writing
from clickstream.sinks.kafka_topic import KafkaTopic
from clickstream.sinks.results_topic import ResultsTopic
from tests.conftest import read_topic, wait_for


def test_counts_are_on_the_topic_while_the_warehouse_upsert_waits(
    settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    path = tmp_path / "warehouse.duckdb"
    sink = ResultsTopic(
        KafkaTopic(topic, settings=settings, small=True),
        DuckDBTable(path, TABLE, key="result_key"),
    )
    counts = [
        WindowCount(metric="shop.gender", window_start=1000 * i, window_end=1000 * (i + 1),
                    key=key, count=i + 1, newest_event_ms=1000 * i + 999)
        for i in range(3) for key in ("female", "male")
    ]  # fmt: skip
    errors: list[BaseException] = []

    def write() -> None:
        try:
            sink.write(counts_table(counts), 0)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with writing(path):  # another writer's turn: the upsert waits for it
        thread = threading.Thread(target=write)
        thread.start()
        on_topic = wait_for(lambda: read_topic(settings, topic) or None, timeout=30)
        assert thread.is_alive(), "the upsert did not wait: the check proves nothing"
    thread.join(60)
    assert not errors, errors
    assert sorted((v["window_start"], v["key"], v["count"]) for _, v in on_topic) == sorted(
        (c.window_start, c.key, c.count) for c in counts
    )
    _, rows = read_query(path, f"SELECT window_start, key, count FROM {TABLE}")
    assert len(rows) == len(counts)
