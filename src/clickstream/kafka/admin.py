"""Topics: create them idempotently, list them with their sizes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from clickstream.errors import ConfigError, KafkaUnavailableError
from clickstream.kafka.config import LOGGER, client_config, consumer_config
from clickstream.kafka.offsets import partitions_of, watermarks
from clickstream.settings import Settings


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    records: int
    """Records currently held (sum over partitions of high - low watermark)."""
    ends: dict[int, int] = field(default_factory=dict)
    """Partition -> offset after its last record (the high watermark)."""


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    config: dict[str, Any] = {**client_config(settings), "logger": LOGGER, **overrides}
    return AdminClient(config)


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return str(error.str()) if error is not None and hasattr(error, "str") else str(exc)


def wait_for_cluster(settings: Settings, timeout: float | None = None) -> None:
    """Raise :class:`KafkaUnavailableError` unless the cluster answers a metadata request."""
    timeout = settings.kafka.timeout_s if timeout is None else timeout
    try:
        # A broker that is still starting refuses connections: try again every 0.2-1 s, not
        # after librdkafka's backoff of up to 10 s.
        admin = admin_client(
            settings, **{"reconnect.backoff.ms": 200, "reconnect.backoff.max.ms": 1000}
        )
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} did not answer within {timeout:g}s "
            f"({_reason(exc)})"
        ) from exc


def standard_topics(settings: Settings) -> list[str]:
    """The topics of the built-in scenarios, which ``up`` and the jobs create."""
    topics = settings.topics
    return [
        topics.web_events,
        topics.web_pings,
        topics.web_custom,
        topics.shop,
        topics.bookstore,
        topics.results,
        topics.dead_letter,
        settings.songs.topic,
    ]


def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    partitions: int | None = None,
    config: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Safe to repeat."""
    wanted = sorted(set(names))
    if not wanted:
        return []
    count = partitions or settings.topics.partitions
    if count < 1:
        raise ConfigError(f"a topic needs at least 1 partition, not {count}")
    admin = admin_client(settings)
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=count,
                replication_factor=settings.topics.replication_factor,
                config=config or {},
            )
            for name in wanted
        ],
        operation_timeout=settings.kafka.timeout_s,
        request_timeout=settings.kafka.timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if error.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT):
                raise KafkaUnavailableError(f"cannot create topic {name}: {error.str()}") from exc
            raise ConfigError(f"cannot create topic {name}: {error.str()}") from exc
    return sorted(created)


def describe_topics(settings: Settings, include_internal: bool = False) -> list[TopicInfo]:
    """Every topic with its partition count and how many records it holds."""
    try:
        metadata = admin_client(settings).list_topics(timeout=settings.kafka.timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} did not answer within "
            f"{settings.kafka.timeout_s:g}s ({_reason(exc)})"
        ) from exc
    names = sorted(
        name for name in metadata.topics if include_internal or not name.startswith("__")
    )
    consumer = Consumer(consumer_config(settings, None, **{"enable.partition.eof": True}))
    try:
        keys = partitions_of(consumer, names, settings.kafka.timeout_s)
        marks = watermarks(consumer, keys, settings.kafka.timeout_s)
    finally:
        consumer.close()
    return [
        TopicInfo(
            name=name,
            partitions=len(metadata.topics[name].partitions),
            records=sum(hi - lo for (topic, _), (lo, hi) in marks.items() if topic == name),
            ends={p: hi for (topic, p), (_, hi) in marks.items() if topic == name},
        )
        for name in names
    ]
