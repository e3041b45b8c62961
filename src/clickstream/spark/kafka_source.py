"""A Kafka streaming source for Spark written with the Python Data Source API.

Used when Spark's own ``kafka`` source is not on the classpath (it needs a connector jar from
Maven). It yields the same columns as Spark's source and follows the same option names:

* ``subscribe``: comma-separated topics; partitions added later are picked up from their
  earliest offset.
* ``startingOffsets``: ``earliest``, ``latest`` or JSON ``{"topic": {"0": 42, "1": -2}}``
  (-2 earliest, -1 latest). Only used when the query starts without a checkpoint.
* ``maxOffsetsPerTrigger``: admission control, shared between partitions in proportion to
  what each has waiting.
* ``failOnDataLoss``: fail (default) when offsets to read were deleted from the topic.
* ``includeHeaders``: add the ``headers`` column.
* ``kafka.<librdkafka setting>``: client configuration (``kafka.bootstrap.servers``...).

Offsets live in Spark's checkpoint as ``{"topic": {"partition": next_offset}}``. Each
micro-batch reads the exact range ``[start, end)`` of every partition with ``assign()``, so a
batch replayed after a restart reads the same records again, and no offset is skipped or read
in two batches. ``Trigger.AvailableNow`` is supported: the target is the end of every partition
when the query starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructType

from clickstream.errors import ConfigError, KafkaUnavailableError, TerminalError
from clickstream.kafka.offsets import Key, partitions_of, watermarks

SOURCE_NAME = "clickstream_kafka"

KAFKA_COLUMNS = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)
HEADERS_COLUMN = "headers array<struct<key: string, value: binary>>"

_ARROW_FIELDS = [
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("topic", pa.string()),
    pa.field("partition", pa.int32()),
    pa.field("offset", pa.int64()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("timestampType", pa.int32()),
]
_ARROW_HEADERS = pa.field(
    "headers", pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())]))
)
# librdkafka timestamp type -> the Java client's TimestampType id that Spark reports.
_TIMESTAMP_TYPES = {0: -1, 1: 0, 2: 1}
_READ_CHUNK = 10_000
SMALL_BATCH = 20_000
"""Micro-batches of at most this many records are read by one task."""

Offsets = dict[str, dict[str, int]]


class KafkaDataSource(DataSource):
    """``spark.readStream.format("clickstream_kafka")``; see the module documentation."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        include = str(_lower(self.options).get("includeheaders", "false")).lower() == "true"
        return f"{KAFKA_COLUMNS}, {HEADERS_COLUMN}" if include else KAFKA_COLUMNS

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KafkaStreamReader(_lower(self.options))


class KafkaRange(InputPartition):
    """One topic-partition's offsets ``[start, end)`` for one micro-batch."""

    def __init__(self, topic: str, partition: int, start: int, end: int) -> None:
        super().__init__((topic, partition, start, end))
        self.topic = topic
        self.partition = partition
        self.start = start
        self.end = end


class KafkaRanges(InputPartition):
    """Several small ranges read one after the other by one task: a micro-batch of a few
    records should not pay for a task (and a Python worker call) per topic-partition."""

    def __init__(self, ranges: list[KafkaRange]) -> None:
        super().__init__(tuple(r.value for r in ranges))
        self.ranges = ranges


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: dict[str, str]) -> None:
        if not options.get("subscribe"):
            raise ConfigError("the Kafka source needs the option subscribe (topic names)")
        self.topics = [t.strip() for t in options["subscribe"].split(",") if t.strip()]
        self.client = {k[len("kafka.") :]: v for k, v in options.items() if k.startswith("kafka.")}
        if "bootstrap.servers" not in self.client:
            raise ConfigError("the Kafka source needs the option kafka.bootstrap.servers")
        self.starting = options.get("startingoffsets", "latest").strip()
        limit = options.get("maxoffsetspertrigger")
        self.max_offsets = int(limit) if limit else None
        if self.max_offsets is not None and self.max_offsets < 1:
            raise ConfigError("maxOffsetsPerTrigger must be at least 1")
        self.fail_on_data_loss = options.get("failondataloss", "true").lower() != "false"
        self.include_headers = options.get("includeheaders", "false").lower() == "true"
        self.timeout = float(options.get("timeoutms", "10000")) / 1000
        self.read_timeout = float(options.get("readtimeoutms", "120000")) / 1000
        self._consumer: Consumer | None = None
        self._target: Offsets | None = None
        self._latest: Offsets | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_consumer"] = None
        return state

    # -- driver side -------------------------------------------------------------------------

    def _metadata_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(_consumer_config(self.client, {"enable.partition.eof": True}))
        return self._consumer

    def _ends(self) -> tuple[dict[Key, int], dict[Key, int]]:
        consumer = self._metadata_consumer()
        keys = partitions_of(consumer, self.topics, self.timeout)
        marks = watermarks(consumer, keys, self.timeout)
        return {k: lo for k, (lo, _) in marks.items()}, {k: hi for k, (_, hi) in marks.items()}

    def initialOffset(self) -> Offsets:
        lows, highs = self._ends()
        if self.starting == "earliest":
            return _nest(lows)
        if self.starting == "latest":
            return _nest(highs)
        try:
            wanted = json.loads(self.starting)
        except json.JSONDecodeError:
            raise ConfigError(
                f"startingOffsets must be earliest, latest or JSON, not {self.starting!r}"
            ) from None
        chosen: dict[Key, int] = {}
        for key, low in lows.items():
            offset = int(wanted.get(key[0], {}).get(str(key[1]), -2))
            chosen[key] = low if offset == -2 else highs[key] if offset == -1 else offset
        return _nest(chosen)

    def prepareForTriggerAvailableNow(self) -> None:
        self._target = _nest(self._ends()[1])

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_offsets) if self.max_offsets else ReadAllAvailable()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        lows, highs = self._ends()
        self._latest = _nest(highs)
        if self._target is not None:
            target = _flat(self._target)
            highs = {k: v for k, v in highs.items() if k in target}
            highs = {k: min(v, target[k]) for k, v in highs.items()}
        begin = _flat(start)
        for key, offset in begin.items():
            if key not in highs:  # a partition that disappeared keeps its position
                highs[key] = offset
        starts = {k: begin.get(k, lows.get(k, 0)) for k in highs}
        ends = {k: max(highs[k], starts[k]) for k in highs}
        if isinstance(limit, ReadMaxRows):
            ends = _share(starts, ends, limit.max_rows)
        return _nest(ends)

    def reportLatestOffset(self) -> Offsets | None:
        """The partition ends seen by the last ``latestOffset`` (Spark asks right after it)."""
        return self._latest if self._latest is not None else _nest(self._ends()[1])

    def partitions(self, start: Offsets, end: Offsets) -> list[InputPartition]:
        begin, finish = _flat(start), _flat(end)
        missing = [k for k in finish if k not in begin]
        lows = self._ends()[0] if missing else {}
        ranges: list[KafkaRange] = []
        for key, stop in sorted(finish.items()):
            first = begin.get(key, lows.get(key, 0))
            if stop > first:
                ranges.append(KafkaRange(key[0], key[1], first, stop))
        if len(ranges) > 1 and sum(r.end - r.start for r in ranges) <= SMALL_BATCH:
            return [KafkaRanges(ranges)]
        return list(ranges)

    def commit(self, end: Offsets) -> None:
        """Offsets live in Spark's checkpoint; nothing to commit to Kafka."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- executor side -----------------------------------------------------------------------

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        if isinstance(partition, KafkaRanges):
            ranges = partition.ranges
        else:
            assert isinstance(partition, KafkaRange)
            ranges = [partition]
        yield from read_ranges(
            self.client,
            ranges,
            include_headers=self.include_headers,
            fail_on_data_loss=self.fail_on_data_loss,
            read_timeout=self.read_timeout,
        )


def read_ranges(
    client: dict[str, str],
    ranges: list[KafkaRange],
    *,
    include_headers: bool = False,
    fail_on_data_loss: bool = True,
    read_timeout: float = 120.0,
) -> Iterator[pa.RecordBatch]:
    """Yield Arrow batches (one topic-partition each) with every record of ``ranges``: offsets
    ``[start, end)`` of each, each record once. One consumer reads them all at the same time."""
    consumer = Consumer(
        _consumer_config(
            client,
            {
                # Offsets below the log start raise (data loss) unless told to skip them.
                "auto.offset.reset": "error" if fail_on_data_loss else "earliest",
                "enable.partition.eof": False,
            },
        )
    )
    schema = pa.schema([*_ARROW_FIELDS, _ARROW_HEADERS] if include_headers else _ARROW_FIELDS)
    by_key = {(r.topic, r.partition): r for r in ranges}
    position = {key: r.start for key, r in by_key.items()}
    waiting = {key for key, r in by_key.items() if r.start < r.end}
    try:
        consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in ranges])
        last_progress = time.monotonic()
        while waiting:
            left = sum(by_key[k].end - position[k] for k in waiting)
            messages = consumer.consume(min(left, _READ_CHUNK), timeout=0.2)
            rows: dict[Key, list[Any]] = {}
            for msg in messages:
                key = (msg.topic(), msg.partition())
                error = msg.error()
                if error is not None:
                    if key in by_key:
                        _raise_read_error(error, by_key[key], position[key])
                    continue
                if key not in waiting:
                    continue
                offset = int(msg.offset() or 0)
                if offset < by_key[key].end:
                    rows.setdefault(key, []).append(msg)
                position[key] = min(offset + 1, by_key[key].end)
                if position[key] >= by_key[key].end:
                    _done(consumer, key, waiting)
            for batch in rows.values():
                yield _to_batch(batch, schema, include_headers)
            if rows:
                last_progress = time.monotonic()
                continue
            for key in list(waiting):
                position[key] = max(position[key], _position(consumer, TopicPartition(*key)))
                if position[key] >= by_key[key].end:
                    _done(consumer, key, waiting)
            if waiting and time.monotonic() - last_progress > read_timeout:
                key = min(waiting)
                raise KafkaUnavailableError(
                    f"{key[0]}[{key[1]}]: no record after offset {position[key] - 1} "
                    f"within {read_timeout:g}s (reading up to {by_key[key].end})"
                )
    finally:
        consumer.close()


def _done(consumer: Consumer, key: Key, waiting: set[Key]) -> None:
    """Stop fetching a topic-partition that reached the end of its range."""
    waiting.discard(key)
    consumer.pause([TopicPartition(*key)])


def _position(consumer: Consumer, tp: TopicPartition) -> int:
    """The consumer's position, which steps over offsets that hold no record."""
    (current,) = consumer.position([TopicPartition(tp.topic, tp.partition)])
    return int(current.offset) if current.offset >= 0 else -1


def _raise_read_error(error: Any, rng: KafkaRange, position: int) -> None:
    code = error.code()
    if code == KafkaError._PARTITION_EOF:
        return
    if code == KafkaError._AUTO_OFFSET_RESET:
        raise TerminalError(
            f"{rng.topic}[{rng.partition}]: offset {position} is no longer in the topic "
            "(retention or deletion); set failOnDataLoss=false to skip lost records"
        )
    raise KafkaUnavailableError(f"reading {rng.topic}[{rng.partition}]: {error.str()}")


def _to_batch(messages: list[Any], schema: pa.Schema, include_headers: bool) -> pa.RecordBatch:
    n = len(messages)
    first = messages[0]
    stamps = [msg.timestamp() for msg in messages]
    columns = [
        pa.array([msg.key() for msg in messages], pa.binary()),
        pa.array([msg.value() for msg in messages], pa.binary()),
        pa.array([first.topic()] * n, pa.string()),
        pa.array([first.partition()] * n, pa.int32()),
        pa.array([msg.offset() for msg in messages], pa.int64()),
        pa.array([ms * 1000 if kind else None for kind, ms in stamps], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        ),
        pa.array([_TIMESTAMP_TYPES.get(kind, -1) for kind, _ in stamps], pa.int32()),
    ]
    if include_headers:
        # null for a record without headers, as Spark's own source gives
        headers = [
            [{"key": k, "value": v} for k, v in msg.headers()] if msg.headers() else None
            for msg in messages
        ]
        columns.append(pa.array(headers, _ARROW_HEADERS.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _consumer_config(client: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "group.id": "clickstream-spark-source",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "queued.max.messages.kbytes": 65536,
    }
    config.update(client)
    config.update(extra)
    return config


def _share(starts: dict[Key, int], ends: dict[Key, int], limit: int) -> dict[Key, int]:
    """Cap the total of ``ends - starts`` at ``limit``, shared in proportion to what waits.

    Largest-remainder rounding: the total is exactly ``min(limit, available)``, so every batch
    makes progress and none is larger than the limit.
    """
    waiting = {k: ends[k] - starts[k] for k in ends}
    total = sum(waiting.values())
    if total <= limit:
        return ends
    shares = {k: limit * w / total for k, w in waiting.items()}
    taken = {k: int(s) for k, s in shares.items()}
    left = limit - sum(taken.values())
    for key in sorted(shares, key=lambda k: (taken[k] - shares[k], k))[:left]:
        taken[key] += 1
    return {k: starts[k] + taken[k] for k in ends}


def _flat(offsets: Offsets | None) -> dict[Key, int]:
    return {
        (topic, int(partition)): int(offset)
        for topic, parts in (offsets or {}).items()
        for partition, offset in parts.items()
    }


def _nest(offsets: dict[Key, int]) -> Offsets:
    nested: Offsets = {}
    for (topic, partition), offset in sorted(offsets.items()):
        nested.setdefault(topic, {})[str(partition)] = offset
    return nested


def _lower(options: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in dict(options).items()}
