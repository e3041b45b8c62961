"""Producer and consumer factories built from the settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from clickstream.errors import KafkaUnavailableError
from clickstream.kafka.config import consumer_config, producer_config
from clickstream.settings import Settings

DeliveryCallback = Callable[[KafkaError | None, Message], None]
PRODUCE_BATCH = 10_000
"""Records handed to librdkafka per call by :meth:`EventProducer.produce_many`."""


@dataclass
class DeliveryStats:
    """What the producer's delivery reports said so far."""

    delivered: int = 0
    failed: int = 0
    last_error: str | None = None


class EventProducer:
    """A safe producer (acks=all, idempotent, lz4) that keeps count of delivery reports.

    :meth:`produce` never drops a record when the local queue is full: it serves delivery
    reports until there is room. :meth:`flush` raises unless every record was acknowledged.
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.topic_timeout = settings.kafka.timeout_s
        self._config = producer_config(settings, **overrides)
        self._producer = Producer(self._config)
        self._lock = threading.Lock()
        self.stats = DeliveryStats()

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self.stats.delivered += 1
            else:
                self.stats.failed += 1
                self.stats.last_error = f"{msg.topic()}: {err.str()}"

    def produce(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        on_delivery: DeliveryCallback | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record; ``on_delivery(err, msg)`` runs once Kafka answered.

        The partition is chosen from the key unless ``partition`` is given; the record's
        timestamp is now unless ``timestamp_ms`` is given.
        """
        # librdkafka's "unassigned" partition: the partitioner picks one from the key.
        target = -1 if partition is None else partition
        report: DeliveryCallback = self._report  # no closure per record when nobody listens
        if on_delivery is not None:
            listener = on_delivery

            def report(err: KafkaError | None, msg: Message) -> None:
                self._report(err, msg)
                listener(err, msg)

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=target,
                    headers=headers,
                    on_delivery=report,
                    timestamp=timestamp_ms or 0,
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def produce_many(self, topic: str, records: list[tuple[bytes | str | None, Any]]) -> None:
        """Queue ``(key, value)`` records in order, thousands per call into librdkafka (a
        third of the cost of a call per record); waits for room while the queue is full."""
        queue_max = int(self._config.get("queue.buffering.max.messages", 100_000))
        step = max(1, min(PRODUCE_BATCH, queue_max))
        for start in range(0, len(records), step):
            chunk = [{"key": k, "value": v} for k, v in records[start : start + step]]
            while len(self._producer) + len(chunk) > queue_max:
                self._producer.poll(0.05)
            self._producer.produce_batch(topic, chunk, on_delivery=self._report)
            failed = [m for m in chunk if "_error" in m]
            if not failed:
                continue
            # The queue filled after all (by bytes): the rest one by one, in order.
            for message in failed:
                if message["_error"].code() != KafkaError._QUEUE_FULL:
                    raise KafkaUnavailableError(f"{topic}: {message['_error'].str()}")
            for message in failed:
                self.produce(topic, message["value"], key=message["key"])

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery reports; return how many were served."""
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float | None = None) -> DeliveryStats:
        """Wait for every queued record; raise unless all were acknowledged."""
        timeout = self.topic_timeout * 3 if timeout is None else timeout
        remaining = self._producer.flush(timeout)
        if remaining:
            raise KafkaUnavailableError(
                f"{remaining} records not acknowledged by Kafka within {timeout:g}s"
            )
        if self.stats.failed:
            raise KafkaUnavailableError(
                f"{self.stats.failed} records were not delivered: {self.stats.last_error}"
            )
        return self.stats

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._producer)


def make_producer(settings: Settings, **overrides: Any) -> EventProducer:
    return EventProducer(settings, **overrides)


def make_consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Consumer:
    """A consumer that never auto-commits; pass librdkafka settings as ``overrides``."""
    return Consumer(consumer_config(settings, group_id, **overrides))
