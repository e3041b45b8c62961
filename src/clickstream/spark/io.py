"""Read Kafka topics as a streaming DataFrame.

Writing to Kafka is a sink: :mod:`clickstream.sinks.kafka_topic`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clickstream.errors import ConfigError
from clickstream.kafka.config import client_config, java_client_options
from clickstream.settings import Settings
from clickstream.spark.kafka_source import SOURCE_NAME
from clickstream.spark.session import has_native_kafka

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

StartingOffsets = str | dict[str, dict[str, int]]
NATIVE_FETCH = {
    "kafka.max.poll.records": "10000",
    "kafka.max.partition.fetch.bytes": str(8 << 20),
}
"""Spark's Kafka connector polls its consumer for every 500 records (at most 1 MiB a partition)
by default; a backlog reads about 1.5x faster in polls of 10,000 (``bench/joins.py``)."""


def kafka_source_format(spark: SparkSession, settings: Settings) -> str:
    """``kafka`` (Spark's connector) or ``clickstream_kafka`` (ours), per ``spark.kafka_source``."""
    choice = settings.spark.kafka_source
    native = has_native_kafka(spark)
    if choice == "native" and not native:
        raise ConfigError(
            "invalid setting spark.kafka_source='native': the spark-sql-kafka connector is not "
            "on the classpath (add it with --packages or use 'auto')"
        )
    return "kafka" if choice == "native" or (choice == "auto" and native) else SOURCE_NAME


def read_kafka(
    spark: SparkSession,
    topics: str | Sequence[str],
    *,
    settings: Settings,
    starting_offsets: StartingOffsets = "latest",
    max_offsets_per_trigger: int | None = None,
    include_headers: bool = False,
    fail_on_data_loss: bool = True,
) -> DataFrame:
    """A streaming DataFrame over ``topics`` with the columns of Spark's Kafka source.

    Columns: key, value (binary), topic, partition, offset, timestamp, timestampType
    (and headers with ``include_headers``). ``max_offsets_per_trigger`` defaults to the
    ``spark.max_offsets_per_trigger`` setting.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    if not names:
        raise ConfigError("read_kafka needs at least one topic")
    fmt = kafka_source_format(spark, settings)
    limit = max_offsets_per_trigger or settings.spark.max_offsets_per_trigger
    options: dict[str, str] = {
        "subscribe": ",".join(names),
        "startingOffsets": (
            starting_offsets if isinstance(starting_offsets, str) else json.dumps(starting_offsets)
        ),
        "failOnDataLoss": str(fail_on_data_loss).lower(),
        "includeHeaders": str(include_headers).lower(),
    }
    if limit:
        options["maxOffsetsPerTrigger"] = str(limit)
    if fmt == "kafka":
        options.update(NATIVE_FETCH)
        options.update(java_client_options(settings))
    else:
        options.update({f"kafka.{k}": str(v) for k, v in client_config(settings).items()})
        options["timeoutMs"] = str(int(settings.kafka.timeout_s * 1000))
    return spark.readStream.format(fmt).options(**options).load()
