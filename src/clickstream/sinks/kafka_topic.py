"""Kafka topics as sinks (:class:`KafkaTopic`): micro-batches produced from the executors, or
from one long-lived producer on the driver for small batches and rows made there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from clickstream.errors import ClickstreamError, ConfigError, KafkaUnavailableError
from clickstream.kafka.clients import EventProducer, make_producer
from clickstream.kafka.config import java_client_options, producer_config
from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay
from clickstream.spark.io import kafka_source_format

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def write_kafka(
    df: DataFrame,
    topic: str,
    *,
    settings: Settings,
    key_column: str | None = "key",
    value_column: str = "value",
) -> int:
    """Produce every row of a (micro-batch) DataFrame to ``topic``; return the count.

    Runs on the executors and fails the task (so Spark retries it) unless Kafka acknowledged
    every record: with Spark's own Kafka sink when the connector is there (see
    :func:`kafka_source_format`), else with one idempotent librdkafka producer per partition.
    A retried task may produce a record twice: downstream sinks are idempotent by key. Columns
    may be string or binary.
    """
    columns = [c for c in (key_column, value_column) if c]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"write_kafka: no column {missing[0]!r} (columns: {df.columns})")
    if kafka_source_format(df.sparkSession, settings) == "kafka":
        return _write_native(df, topic, settings, key_column, value_column)
    produce = _partition_producer(
        topic, producer_config(settings), key_column, value_column, settings.kafka.timeout_s * 3
    )
    rows = df.select(*columns).mapInArrow(produce, "produced long").groupBy().sum().collect()
    return int(rows[0][0] or 0) if rows else 0


def _write_native(
    df: DataFrame, topic: str, settings: Settings, key_column: str | None, value_column: str
) -> int:
    """Spark's own Kafka sink. It reports no count (an ``Observation`` never completes on it),
    so the rows are cached, counted, then written from the cache."""
    from pyspark.sql import functions as F

    selected = [F.col(value_column).alias("value")]
    if key_column:
        selected.insert(0, F.col(key_column).alias("key"))
    options = java_client_options(settings)
    options.update(
        {
            "kafka.acks": "all",
            "kafka.enable.idempotence": "true",
            "kafka.compression.type": "lz4",
            "kafka.linger.ms": "5",
            "kafka.request.timeout.ms": str(int(settings.kafka.timeout_s * 1000)),
            "kafka.delivery.timeout.ms": str(int(settings.kafka.timeout_s * 3000)),
        }
    )
    rows = df.select(*selected).persist()
    try:
        count = rows.count()
        if count:
            rows.write.format("kafka").options(**options).option("topic", topic).save()
    finally:
        rows.unpersist()
    return int(count)


class KafkaTopic(BaseSink):
    """A Kafka topic as a sink. A micro-batch is produced from the executors
    (:func:`write_kafka`), or, with ``small`` (counts, dead letters: a few rows per batch),
    collected and produced by one long-lived producer on the driver: no extra Spark job per
    batch, no producer start-up per task. An Arrow table (rows made on the driver) is produced
    from the driver. Either way it raises unless Kafka acknowledged every record. A replay
    produces its records again (:attr:`Replay.AT_LEAST_ONCE`); readers keep the newest record
    per key. From the driver, a record larger than Kafka takes goes to the dead-letter topic
    with the reason instead of failing the query."""

    replay = Replay.AT_LEAST_ONCE

    def __init__(
        self,
        topic: str,
        *,
        settings: Settings,
        key_column: str | None = "key",
        value_column: str = "value",
        small: bool = False,
    ) -> None:
        self.name = f"kafka:{topic}"
        self.topic = topic
        self.settings = settings
        self.key_column = key_column
        self.value_column = value_column
        self.small = small
        self.dead_letter = settings.topics.dead_letter
        self.too_large = 0
        """Records sent to the dead-letter topic instead: larger than Kafka takes."""
        self._producer: EventProducer | None = None

    @classmethod
    def from_settings(cls, settings: Settings, topic: str, *, small: bool = False) -> KafkaTopic:
        """Topic ``topic`` (``key`` and ``value`` columns) of the configured cluster."""
        return cls(topic, settings=settings, small=small)

    @classmethod
    def dead_letters(cls, settings: Settings) -> KafkaTopic:
        """The dead-letter topic (``topics.dead_letter``), written from the driver."""
        return cls(settings.topics.dead_letter, settings=settings, small=True)

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        if self.small:
            columns = [c for c in (self.key_column, self.value_column) if c]
            return self.write_table(frame.select(*columns).toArrow(), batch_id)
        return write_kafka(
            frame,
            self.topic,
            settings=self.settings,
            key_column=self.key_column,
            value_column=self.value_column,
        )

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        values = rows.column(self.value_column).to_pylist()
        keys = rows.column(self.key_column).to_pylist() if self.key_column else [None] * len(values)
        return self.write_pairs(keys, values)

    def write_pairs(
        self, keys: Sequence[bytes | str | None], values: Sequence[bytes | str | None]
    ) -> int:
        """Records made on the driver, as keys and values in order, from the driver's
        producer; waits until Kafka acknowledged them all."""
        if values and _most(keys) + _most(values) <= MAX_RECORD_BYTES:  # all fit: no check each
            return self._send(zip(keys, values, strict=True), checked=True)
        return self._send(zip(keys, values, strict=True))

    def _send(
        self,
        records: Iterable[tuple[bytes | str | None, bytes | str | None]],
        checked: bool = False,
    ) -> int:
        """Produce ``(key, value)`` records and wait until Kafka acknowledged them all;
        ``checked``: every one is known to fit in a record."""
        if self._producer is None:
            self._producer = make_producer(self.settings, **{"linger.ms": 0})
        producer = self._producer
        count = 0
        fits: list[tuple[bytes | str | None, bytes | str | None]] = []  # most records
        if checked:
            fits = list(records)
            records, count = (), len(fits)
        for key, value in records:
            if _most_bytes(key) + _most_bytes(value) <= MAX_RECORD_BYTES:
                fits.append((key, value))
                count += 1
                continue
            producer.produce_many(self.topic, fits)  # in order
            fits = []
            size = _size(key) + _size(value)
            if size > MAX_RECORD_BYTES and self.topic != self.dead_letter:
                # One oversized result must not fail the query (and every replay of its batch).
                producer.produce(
                    self.dead_letter, _too_large(self.topic, key, value, size), key=None
                )
                self.too_large += 1
            else:
                producer.produce(self.topic, value, key=key)
            count += 1
        producer.produce_many(self.topic, fits)
        if count:
            try:
                producer.flush()
            except ClickstreamError:
                self._producer = None  # a producer that lost records is not reused
                raise
        return count


def kafka_sink(
    topic: str, *, settings: Settings, key_column: str | None = "key", value_column: str = "value"
) -> Callable[[DataFrame, int], None]:
    """A ``foreachBatch`` function writing each micro-batch to ``topic`` from the executors."""
    return KafkaTopic(topic, settings=settings, key_column=key_column, value_column=value_column)


def records(pairs: Iterable[tuple[bytes | str | None, bytes | str | None]]) -> pa.Table:
    """``(key, value)`` pairs made on the driver as the Arrow table a :class:`KafkaTopic`
    writes."""
    keys, values = [], []
    for key, value in pairs:
        keys.append(key.encode() if isinstance(key, str) else key)
        values.append(value.encode() if isinstance(value, str) else value)
    return pa.table({"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.binary())})


MAX_RECORD_BYTES = 990_000
"""The largest record :class:`KafkaTopic` produces from the driver: librdkafka's default
``message.max.bytes`` (1,000,000) less room for the record's overhead."""
KEPT_BYTES = 65_536
"""How much of an oversized record's key and value its dead letter keeps."""


def _most_bytes(part: bytes | str | None) -> int:
    """An upper bound of :func:`_size` without encoding: UTF-8 takes at most 4 bytes a
    character."""
    if part is None:
        return 0
    return 4 * len(part) if isinstance(part, str) else len(part)


def _most(parts: Sequence[bytes | str | None]) -> int:
    """:func:`_most_bytes` of the largest of ``parts`` (at C speed)."""
    return 4 * max(map(len, filter(None, parts)), default=0)


def _size(part: bytes | str | None) -> int:
    if part is None:
        return 0
    return len(part.encode() if isinstance(part, str) else part)


def _too_large(topic: str, key: bytes | str | None, value: bytes | str | None, size: int) -> bytes:
    def cut(part: bytes | str | None) -> str | None:
        if part is None:
            return None
        raw = part.encode() if isinstance(part, str) else part
        return raw[:KEPT_BYTES].decode(errors="replace")

    return json.dumps(
        {
            "reason": f"record of {size} bytes is larger than Kafka takes ({MAX_RECORD_BYTES})",
            "targetTopic": topic,
            "key": cut(key),
            "value": cut(value),
        }
    ).encode()


def _partition_producer(
    topic: str,
    config: dict[str, Any],
    key_column: str | None,
    value_column: str,
    timeout: float,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def produce(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from confluent_kafka import Producer

        producer = Producer(config)
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.str())

        count = 0
        for batch in batches:
            values = batch.column(value_column).to_pylist()
            keys = batch.column(key_column).to_pylist() if key_column else [None] * len(values)
            for key, value in zip(keys, values, strict=True):
                while True:
                    try:
                        producer.produce(topic, value=value, key=key, on_delivery=report)
                        break
                    except BufferError:
                        producer.poll(0.05)
                count += 1
            producer.poll(0)
        remaining = producer.flush(timeout)
        if remaining or failures:
            reason = failures[0] if failures else f"{remaining} records not acknowledged"
            raise KafkaUnavailableError(f"writing to topic {topic} failed: {reason}")
        yield pa.RecordBatch.from_pydict({"produced": [count]})

    return produce
