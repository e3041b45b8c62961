"""The partitions of topics and where each begins and ends."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

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
    """(low, high) watermark of each partition, asked of its leader (ListOffsets)."""
    result: dict[Key, tuple[int, int]] = {}
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
    return result
