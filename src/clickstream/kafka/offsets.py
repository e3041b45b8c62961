"""The partitions of topics and where each begins and ends."""

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
    """(low, high) watermark of each partition, asked of its leader (ListOffsets).

    A partition whose leader is moving or not known yet (a topic just created, a broker just
    restarted) is asked again until ``timeout``; other errors fail at once."""
    result: dict[Key, tuple[int, int]] = {}
    for topic, partition in keys:
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0.1)
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=left, cached=False
                )
                break
            except KafkaException as exc:
                if _leader_moving(exc) and time.monotonic() < deadline - 0.2:
                    time.sleep(0.2)
                    continue
                raise KafkaUnavailableError(
                    f"cannot list offsets of {topic}[{partition}]: {exc}"
                ) from exc
        result[(topic, partition)] = (low, high)
    return result


_LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
}


def _leader_moving(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() in _LEADER_MOVING
