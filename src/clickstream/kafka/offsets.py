"""Exact partition offsets, including on brokers whose ListOffsets answer falls short.

The embedded broker answers ListOffsets(latest) with the base offset of the last record batch
plus one, not the log-end offset. A fetch response carries the true high watermark, so
:func:`watermarks` fetches from one offset before the reported end and reads the high watermark
librdkafka cached from that response. On a broker that answers correctly the probe changes
nothing and costs one small fetch per non-empty partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from clickstream.errors import KafkaUnavailableError

Key = tuple[str, int]


def partitions_of(consumer: Consumer, topics: Iterable[str], timeout: float) -> list[Key]:
    """Every (topic, partition) of ``topics`` that exists now, sorted."""
    found: list[Key] = []
    for topic in topics:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot read metadata of topic {topic}: {exc}") from exc
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            continue
        found.extend((topic, p) for p in info.partitions)
    return sorted(found)


def watermarks(
    consumer: Consumer, keys: Iterable[Key], timeout: float
) -> dict[Key, tuple[int, int]]:
    """(low, high) watermark of each partition; ``high`` is the true log-end offset.

    The consumer must not be in use by anything else: it is assigned and unassigned here.
    """
    result: dict[Key, tuple[int, int]] = {}
    probe: list[TopicPartition] = []
    for topic, partition in keys:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"cannot list offsets of {topic}[{partition}]: {exc}"
            ) from exc
        result[(topic, partition)] = (low, high)
        if high > low:
            probe.append(TopicPartition(topic, partition, high - 1))
    if probe:
        _probe_high_watermarks(consumer, probe, result, timeout)
    return result


def _probe_high_watermarks(
    consumer: Consumer,
    probe: list[TopicPartition],
    result: dict[Key, tuple[int, int]],
    timeout: float,
) -> None:
    consumer.assign(probe)
    pending = {(tp.topic, tp.partition) for tp in probe}
    deadline = time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.05)
            if msg is not None:
                error = msg.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaUnavailableError(
                        f"cannot fetch {msg.topic()}[{msg.partition()}]: {error.str()}"
                    )
                pending.discard((msg.topic(), msg.partition()))
            # Any fetch answer carries the high watermark, even one without records (the
            # embedded broker has been seen to answer some fetches that way). A value cached
            # by an earlier probe is stale unless it reaches the ListOffsets answer.
            for key in list(pending):
                _, cached = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
                if cached >= result[key][1]:
                    pending.discard(key)
        if pending:
            raise KafkaUnavailableError(
                f"no fetch answer within {timeout:g}s for {sorted(pending)}"
            )
        for tp in probe:
            key = (tp.topic, tp.partition)
            _, cached_high = consumer.get_watermark_offsets(tp, cached=True)
            low, high = result[key]
            result[key] = (low, max(high, cached_high))
    finally:
        consumer.unassign()
