"""read_kafka through the project's Python streaming source (the fallback for machines that
cannot fetch Spark's connector), against the real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings
from clickstream.spark.io import kafka_source_format, read_kafka
from tests.spark.streams import run_available_now

pytestmark = pytest.mark.slow


def run_to_table(spark: Any, df: Any, out: Path, checkpoint: Path) -> list[dict[str, Any]]:
    """Run ``df`` with availableNow into parquet; return the progress of each batch."""
    query = (
        df.writeStream.format("parquet")
        .option("path", str(out))
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(180)
    assert query.exception() is None, query.exception()
    return [p for p in query.recentProgress if p["numInputRows"] > 0]


def offsets_in(spark, out: Path) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    rows = spark.read.parquet(str(out)).select("partition", "offset").collect()
    return [(r.partition, r.offset) for r in rows]


def with_source(settings: Settings, source: str) -> Settings:
    spark = settings.spark.model_copy(update={"kafka_source": source})
    return settings.model_copy(update={"spark": spark})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The session's settings, reading with the Python source although the connector is there."""
    return with_source(settings, "python")


def test_the_setting_chooses_the_source(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    assert kafka_source_format(spark, settings) == "clickstream_kafka"
    assert kafka_source_format(spark, with_source(settings, "auto")) == "kafka"
    assert kafka_source_format(spark, with_source(settings, "native")) == "kafka"


def test_round_trip_exact_then_resume_from_checkpoint(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    topic = new_topic(partitions=4)
    produce(topic, 2_000, partitions=4)
    df = read_kafka(spark, topic, settings=settings, starting_offsets="earliest")
    out, checkpoint = tmp_path / "out", tmp_path / "cp"

    run_to_table(spark, df, out, checkpoint)
    seen = offsets_in(spark, out)
    assert len(seen) == 2_000
    assert sorted(seen) == sorted((p, o) for p in range(4) for o in range(500))

    produce(topic, 300, start=2_000, partitions=4)
    run_to_table(spark, df, out, checkpoint)
    after = offsets_in(spark, out)
    assert len(after) == 2_300
    assert len(set(after)) == 2_300
    values = {json.loads(r.value)["i"] for r in spark.read.parquet(str(out)).collect()}
    assert values == set(range(2_300))


def test_columns_match_spark_kafka_source(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    produce(topic, 3)
    df = read_kafka(spark, topic, settings=settings, starting_offsets="earliest")
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("key", "binary"),
        ("value", "binary"),
        ("topic", "string"),
        ("partition", "int"),
        ("offset", "bigint"),
        ("timestamp", "timestamp"),
        ("timestampType", "int"),
    ]
    run_to_table(spark, df, tmp_path / "out", tmp_path / "cp")
    rows = spark.read.parquet(str(tmp_path / "out")).orderBy("offset").collect()
    assert [r.key for r in rows] == [b"0", b"1", b"2"]
    assert {r.topic for r in rows} == {topic}
    assert {r.timestampType for r in rows} == {0}  # CreateTime
    now = datetime.now(UTC)
    for row in rows:
        stamp = row.timestamp.replace(tzinfo=UTC)
        assert now - timedelta(minutes=5) < stamp <= now + timedelta(seconds=5)


def test_admission_control_caps_every_batch(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    topic = new_topic(partitions=3)
    produce(topic, 1_000, partitions=3)
    df = read_kafka(
        spark, topic, settings=settings, starting_offsets="earliest", max_offsets_per_trigger=150
    )
    progress = run_to_table(spark, df, tmp_path / "out", tmp_path / "cp")
    sizes = [p["numInputRows"] for p in progress]
    assert sum(sizes) == 1_000
    assert max(sizes) <= 150
    assert len(sizes) == 7  # 6 full batches of 150 and one of 100
    assert len(set(offsets_in(spark, tmp_path / "out"))) == 1_000


def test_starting_offsets_latest_and_json(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    topic = new_topic(partitions=2)
    produce(topic, 100, partitions=2)
    latest = read_kafka(spark, topic, settings=settings, starting_offsets="latest")
    progress = run_to_table(spark, latest, tmp_path / "a", tmp_path / "a-cp")
    assert progress == []  # nothing new since the query started

    from_json = read_kafka(
        spark, topic, settings=settings, starting_offsets={topic: {"0": 40, "1": -2}}
    )
    run_to_table(spark, from_json, tmp_path / "b", tmp_path / "b-cp")
    seen = offsets_in(spark, tmp_path / "b")
    assert sorted(seen) == [(0, o) for o in range(40, 50)] + [(1, o) for o in range(50)]


def test_several_topics_and_a_topic_created_later(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    first = new_topic(partitions=2)
    later = new_topic(create=False)
    produce(first, 50, partitions=2)
    df = read_kafka(spark, [first, later], settings=settings, starting_offsets="earliest")
    out, checkpoint = tmp_path / "out", tmp_path / "cp"
    run_to_table(spark, df, out, checkpoint)

    ensure_topics(settings, [later], partitions=3)
    produce(later, 30, partitions=3)
    produce(first, 10, start=50, partitions=2)
    run_to_table(spark, df, out, checkpoint)
    rows = spark.read.parquet(str(out)).select("topic", "partition", "offset").collect()
    counts = {t: sum(1 for r in rows if r.topic == t) for t in (first, later)}
    assert counts == {first: 60, later: 30}
    assert len({(r.topic, r.partition, r.offset) for r in rows}) == 90


def test_replayed_batch_reads_the_same_offsets(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    """A crash after planning a batch and before committing it: the restart replays the
    batch from the checkpoint with exactly the same records, none lost, none extra."""
    topic = new_topic(partitions=2)
    produce(topic, 400, partitions=2)
    batches = tmp_path / "batches"
    crash_marker = tmp_path / "crash-once"
    crash_marker.touch()

    def sink(batch, batch_id: int) -> None:  # type: ignore[no-untyped-def]
        batch.write.mode("overwrite").parquet(str(batches / f"batch={batch_id}"))
        if batch_id == 1 and crash_marker.exists():
            crash_marker.unlink()
            raise RuntimeError("simulated crash before commit")

    df = read_kafka(
        spark, topic, settings=settings, starting_offsets="earliest", max_offsets_per_trigger=100
    )

    def run() -> BaseException | None:
        return run_available_now(df, sink, tmp_path / "cp")

    assert run() is not None  # the crash
    first_try = {
        (r.partition, r.offset) for r in spark.read.parquet(str(batches / "batch=1")).collect()
    }
    assert run() is None
    replayed = {
        (r.partition, r.offset) for r in spark.read.parquet(str(batches / "batch=1")).collect()
    }
    assert replayed == first_try
    rows = spark.read.parquet(str(batches)).select("partition", "offset").collect()
    assert len(rows) == 400
    assert len({(r.partition, r.offset) for r in rows}) == 400


def test_include_headers(  # type: ignore[no-untyped-def]
    spark, settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    from clickstream.kafka.clients import make_producer

    topic = new_topic(partitions=1)
    producer = make_producer(settings)
    producer.produce(topic, b"a", headers=[("source", b"tracker"), ("v", b"2")])
    producer.produce(topic, b"b")
    producer.flush()
    df = read_kafka(
        spark, topic, settings=settings, starting_offsets="earliest", include_headers=True
    )
    assert df.schema["headers"].dataType.simpleString() == "array<struct<key:string,value:binary>>"
    run_to_table(spark, df, tmp_path / "out", tmp_path / "cp")
    rows = spark.read.parquet(str(tmp_path / "out")).orderBy("offset").collect()
    assert [(h.key, h.value) for h in rows[0].headers] == [("source", b"tracker"), ("v", b"2")]
    assert rows[1].headers is None  # as Spark's own source gives


def test_small_batches_are_read_by_one_task_large_ones_per_partition(
    spark: Any, settings: Settings, new_topic: Callable[..., str], produce: Callable[..., int]
) -> None:
    from clickstream.kafka.config import client_config
    from clickstream.spark.kafka_source import (
        SMALL_BATCH,
        KafkaRange,
        KafkaRanges,
        KafkaStreamReader,
    )

    topic = new_topic(partitions=4)
    produce(topic, 40, partitions=4)
    options = {"subscribe": topic, "startingoffsets": "earliest"}
    options |= {f"kafka.{k}": str(v) for k, v in client_config(settings).items()}
    reader = KafkaStreamReader(options)
    start = {topic: {str(p): 0 for p in range(4)}}
    small = reader.partitions(start, {topic: {str(p): 10 for p in range(4)}})
    assert len(small) == 1
    assert isinstance(small[0], KafkaRanges)
    assert [(r.partition, r.start, r.end) for r in small[0].ranges] == [
        (p, 0, 10) for p in range(4)
    ]
    large = reader.partitions(start, {topic: {str(p): SMALL_BATCH for p in range(4)}})
    assert [type(r) for r in large] == [KafkaRange] * 4
    reader.stop()
    # Read through Spark: every record once from the one-task batch.
    frame = read_kafka(spark, topic, settings=settings, starting_offsets="earliest")
    rows = (
        frame.writeStream.format("memory")
        .queryName(f"small_{topic.replace('-', '_')}")
        .trigger(availableNow=True)
        .start()
    )
    rows.awaitTermination(120)
    got = spark.sql(f"select value from small_{topic.replace('-', '_')}").collect()
    assert sorted(json.loads(r.value)["i"] for r in got) == list(range(40))
