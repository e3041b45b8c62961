"""Topics: create them idempotently, list them with their sizes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from clickstream.errors import ConfigError, KafkaAccessError, KafkaUnavailableError
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


#: librdkafka errors that retrying cannot fix: wrong credentials, a certificate not trusted.
FATAL_CODES = ("_AUTHENTICATION", "_SSL", "SASL_AUTHENTICATION_FAILED", "_INVALID_ARG")
FATAL_WORDS = ("authentication", "certificate", "handshake")


def wait_for_cluster(settings: Settings, timeout: float | None = None) -> None:
    """Raise :class:`KafkaUnavailableError` unless the cluster answers a metadata request.

    A wrong password or an untrusted certificate raises at once (within a second of the
    broker's answer), with librdkafka's reason, instead of retrying until ``timeout``."""
    timeout = settings.kafka.timeout_s if timeout is None else timeout
    fatal: list[str] = []

    def on_error(error: KafkaError) -> None:
        text = error.str().lower()
        if error.name() in FATAL_CODES or any(word in text for word in FATAL_WORDS):
            fatal.append(error.str())

    # A broker that is still starting refuses connections: try again every 0.2-1 s, not
    # after librdkafka's backoff of up to 10 s.
    admin = admin_client(
        settings,
        **{"reconnect.backoff.ms": 200, "reconnect.backoff.max.ms": 1000, "error_cb": on_error},
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            if fatal:
                raise KafkaAccessError(
                    f"Kafka at {settings.kafka.bootstrap_servers} refused the connection: "
                    f"{security_hint(fatal[0])}"
                ) from None
            if time.monotonic() >= deadline:
                raise KafkaUnavailableError(
                    f"Kafka at {settings.kafka.bootstrap_servers} did not answer within "
                    f"{timeout:g}s ({_reason(exc)})"
                ) from exc


def security_hint(reason: str) -> str:
    """librdkafka's reason, with what to check."""
    text = reason.splitlines()[0].strip()
    lower = text.lower()
    if "bad certificate" in lower:
        return (
            f"{text} (the broker did not accept the client certificate: check "
            "kafka.ssl_certificate_location and kafka.ssl_key_location)"
        )
    if "certificate" in lower or "handshake" in lower:
        return (
            f"{text} (check kafka.ssl_ca_location, kafka.ssl_certificate_location and "
            "kafka.ssl_key_location)"
        )
    if "authentication" in lower:
        return f"{text} (check kafka.sasl_username, kafka.sasl_password, kafka.sasl_mechanism)"
    return text


def standard_topics(settings: Settings) -> list[str]:
    """The topics of the built-in scenarios, which ``up`` and the jobs create."""
    topics = settings.topics
    return [
        topics.web_events,
        topics.web_pings,
        topics.web_custom,
        topics.shop,
        topics.shop_genders,
        topics.bookstore,
        topics.results,
        topics.dead_letter,
        settings.songs.topic,
        settings.joins.users_topic,
        settings.joins.events_topic,
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
