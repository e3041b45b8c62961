"""write_kafka / kafka_sink: micro-batches produced to a topic, read back exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from clickstream.errors import ConfigError
from clickstream.kafka.admin import describe_topics
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import kafka_sink, write_kafka
from clickstream.spark.io import read_kafka

pytestmark = pytest.mark.slow


@pytest.fixture(params=["native", "python"])
def sink_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Spark's own Kafka sink (the connector), and clickstream's producers (the fallback)."""
    spark = settings.spark.model_copy(update={"kafka_source": request.param})
    return settings.model_copy(update={"spark": spark})


def test_write_kafka_produces_every_row(  # type: ignore[no-untyped-def]
    spark, sink_settings: Settings, new_topic: Callable[..., str]
) -> None:
    settings = sink_settings
    topic = new_topic(partitions=2)
    df = spark.range(0, 500).selectExpr("CAST(id AS STRING) AS key", "to_json(struct(id)) AS value")
    assert write_kafka(df, topic, settings=settings) == 500
    (info,) = [t for t in describe_topics(settings) if t.name == topic]
    assert info.records == 500


def test_write_kafka_names_a_missing_column(spark, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    df = spark.range(3)
    with pytest.raises(ConfigError, match="no column 'key'"):
        write_kafka(df, "anything", settings=settings)


def test_kafka_sink_in_foreach_batch(  # type: ignore[no-untyped-def]
    spark, sink_settings: Settings, new_topic: Callable[..., str], produce, tmp_path: Path
) -> None:
    settings = sink_settings
    source, target = new_topic(partitions=2), new_topic(partitions=1)
    produce(source, 120, partitions=2)
    stream = read_kafka(spark, source, settings=settings, starting_offsets="earliest")
    upper = stream.selectExpr("key", "upper(CAST(value AS STRING)) AS value")
    query = (
        upper.writeStream.foreachBatch(kafka_sink(target, settings=settings))
        .option("checkpointLocation", str(tmp_path / "cp"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(180)
    assert query.exception() is None
    copied = (
        read_kafka(spark, target, settings=settings, starting_offsets="earliest")
        .writeStream.format("memory")
        .queryName("copied")
        .trigger(availableNow=True)
        .start()
    )
    copied.awaitTermination(180)
    values = [json.loads(r.value) for r in spark.sql("SELECT value FROM copied").collect()]
    assert sorted(v["I"] for v in values) == list(range(120))
    assert all(set(v) == {"I"} for v in values)
