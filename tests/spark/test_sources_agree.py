"""Spark's own Kafka source (the default) and clickstream's Python source (the fallback) read
the same topic into the same rows, through batches capped by admission control, a crash before
a commit, and a restart from the checkpoint with more records produced meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.spark.io import kafka_source_format, read_kafka
from tests.spark.streams import run_available_now

pytestmark = pytest.mark.slow

COLUMNS = ["key", "value", "topic", "partition", "offset", "timestamp", "timestampType"]


def produce_mixed(settings: Settings, topic: str, start: int, n: int) -> None:
    """Keyed and unkeyed records, empty and null values, spread by the default partitioner."""
    producer = make_producer(settings, **{"linger.ms": 5})
    for i in range(start, start + n):
        key = None if i % 7 == 0 else f"user-{i % 13}".encode()
        value = None if i % 11 == 0 else (b"" if i % 17 == 0 else f'{{"i": {i}}}'.encode())
        producer.produce(topic, value, key)
    producer.flush()


def read_all(spark: Any, settings: Settings, topic: str, work: Path) -> list[tuple[Any, ...]]:
    """Read what ``topic`` holds in batches of at most 700 records, crashing once before the
    commit of the second batch of this run, then restarting from the checkpoint; return every
    row written so far (earlier runs' too)."""
    df = read_kafka(
        spark, topic, settings=settings, starting_offsets="earliest", max_offsets_per_trigger=700
    )
    out = work / "batches"
    work.mkdir(parents=True, exist_ok=True)
    crash_once = work / "crash-once"
    crash_once.touch()
    seen: list[int] = []

    def sink(batch: Any, batch_id: int) -> None:
        batch.select(*COLUMNS).write.mode("overwrite").parquet(str(out / f"batch={batch_id}"))
        seen.append(batch_id)
        if len(seen) == 2 and crash_once.exists():
            crash_once.unlink()
            raise RuntimeError("simulated crash before the commit")

    def run() -> BaseException | None:
        return run_available_now(df, sink, work / "checkpoint")

    assert run() is not None  # the crash
    assert run() is None  # the crashed batch replayed from the checkpoint, then the rest
    assert seen[2] == seen[1]
    return [tuple(row) for row in spark.read.parquet(str(out)).select(*COLUMNS).collect()]


def test_native_and_python_sources_give_identical_rows(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=4)
    produce_mixed(settings, topic, 0, 2_500)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    sources = {"native": "kafka", "python": "clickstream_kafka"}
    first_pass: dict[str, int] = {}
    for source, fmt in sources.items():
        chosen = settings.model_copy(
            update={"spark": settings.spark.model_copy(update={"kafka_source": source})}
        )
        assert kafka_source_format(spark, chosen) == fmt
        rows[source] = read_all(spark, chosen, topic, tmp_path / source)
        first_pass[source] = len(rows[source])
    assert first_pass == {"native": 2_500, "python": 2_500}

    # More records, then both restart from their checkpoints.
    produce_mixed(settings, topic, 2_500, 1_000)
    for source in sources:
        chosen = settings.model_copy(
            update={"spark": settings.spark.model_copy(update={"kafka_source": source})}
        )
        rows[source] = read_all(spark, chosen, topic, tmp_path / source)

    native, python = (sorted(rows[s], key=lambda r: (r[3], r[4])) for s in ("native", "python"))
    assert len(native) == 3_500
    assert len({(r[3], r[4]) for r in native}) == 3_500  # every offset once
    assert native == python
    assert {r[3] for r in native} == {0, 1, 2, 3}
    assert sum(1 for r in native if r[0] is None) == len(range(0, 3_500, 7))
    assert sum(1 for r in native if r[1] is None) == len(range(0, 3_500, 11))
