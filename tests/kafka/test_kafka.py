"""Kafka helpers against the real embedded broker."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import cast

import pytest
from confluent_kafka import Consumer

from clickstream.errors import KafkaUnavailableError
from clickstream.kafka.admin import describe_topics, ensure_topics, wait_for_cluster
from clickstream.kafka.clients import make_consumer, make_producer
from clickstream.kafka.config import client_config, consumer_config, producer_config
from clickstream.kafka.offsets import partitions_of, watermarks
from clickstream.settings import Settings, load_settings
from tests.conftest import read_topic


def test_ensure_topics_is_idempotent(settings: Settings, new_topic: Callable[..., str]) -> None:
    name = new_topic(create=False)
    assert ensure_topics(settings, [name], partitions=3) == [name]
    assert ensure_topics(settings, [name], partitions=3) == []
    (info,) = [t for t in describe_topics(settings) if t.name == name]
    assert info.partitions == 3
    assert info.records == 0


def test_watermarks_are_the_true_log_end(
    settings: Settings, new_topic: Callable[..., str], produce: Callable[..., int]
) -> None:
    """Batched produce makes multi-record batches; the end must count every record."""
    topic = new_topic(partitions=2)
    produce(topic, 1_001, partitions=2)
    consumer = Consumer(consumer_config(settings, None, **{"enable.partition.eof": True}))
    try:
        keys = partitions_of(consumer, [topic], 5)
        assert keys == [(topic, 0), (topic, 1)]
        assert watermarks(consumer, keys, 5) == {(topic, 0): (0, 501), (topic, 1): (0, 500)}
        assert watermarks(consumer, [], 5) == {}
    finally:
        consumer.close()


def test_producer_reports_deliveries(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    producer = make_producer(settings)
    seen: list[int] = []
    for i in range(50):
        producer.produce(
            topic,
            f"v{i}",
            key="k",
            on_delivery=lambda err, msg: seen.append(cast(int, msg.offset())),
        )
    stats = producer.flush()
    assert stats.delivered == 50
    assert stats.failed == 0
    assert sorted(seen) == list(range(50))
    consumer = make_consumer(settings, "test-group")
    try:
        from confluent_kafka import TopicPartition

        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes | None] = []
        while len(got) < 50:
            msg = consumer.poll(5)
            assert msg is not None
            assert msg.error() is None
            got.append(msg.value())
        assert got == [f"v{i}".encode() for i in range(50)]
    finally:
        consumer.close()


def test_produce_many_keeps_order_and_waits_for_room_in_a_small_queue(
    settings: Settings, new_topic: Callable[..., str]
) -> None:
    """Thousands of records per call into librdkafka, through a queue of 300: each waits for
    room, none is lost, and one key's records stay in order."""
    topic = new_topic(partitions=2)
    producer = make_producer(settings, **{"queue.buffering.max.messages": 300})
    records = [(f"k{i % 7}", json.dumps({"i": i})) for i in range(2_500)]
    producer.produce_many(topic, records)  # type: ignore[arg-type]
    stats = producer.flush()
    assert (stats.delivered, stats.failed) == (2_500, 0)
    got = read_topic(settings, topic)
    assert len(got) == 2_500
    for k in range(7):
        mine = [value["i"] for key, value in got if key == f"k{k}".encode()]
        assert mine == [i for i in range(2_500) if i % 7 == k]


def test_unreachable_cluster_is_a_transient_error() -> None:
    settings = load_settings(
        environ={
            "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "CLICKSTREAM_KAFKA_TIMEOUT_S": "1",
        }
    )
    with pytest.raises(KafkaUnavailableError, match="did not answer within 1s"):
        wait_for_cluster(settings)
    producer = make_producer(settings, **{"message.timeout.ms": 500})
    producer.produce("anything", b"x")
    with pytest.raises(KafkaUnavailableError, match=r"not delivered|not acknowledged"):
        producer.flush(5)


def test_security_settings_reach_librdkafka() -> None:
    settings = load_settings(
        environ={
            "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": "pkc.example:9092",
            "CLICKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CLICKSTREAM_KAFKA_SASL_MECHANISM": "PLAIN",
            "CLICKSTREAM_KAFKA_SASL_USERNAME": "key",
            "CLICKSTREAM_KAFKA_SASL_PASSWORD": "secret",
            "CLICKSTREAM_KAFKA_SSL_CA_LOCATION": "/etc/ssl/ca.pem",
        }
    )
    config = client_config(settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert (config["sasl.username"], config["sasl.password"]) == ("key", "secret")
    assert config["ssl.ca.location"] == "/etc/ssl/ca.pem"
    assert "secret" not in repr(settings)
    producer = producer_config(settings)
    assert (producer["acks"], producer["enable.idempotence"]) == ("all", True)
    consumer = consumer_config(settings)
    assert consumer["session.timeout.ms"] == 45_000
    assert consumer["enable.auto.commit"] is False


def test_watermarks_wait_for_a_partition_whose_leader_is_not_known_yet(settings: Settings) -> None:
    """A topic created while its offsets are asked (a new topic, or a leader moving) is waited
    for within the timeout, not reported as Kafka being unavailable."""
    topic = f"late-{uuid.uuid4().hex[:8]}"
    creator = threading.Timer(1.5, ensure_topics, args=(settings, [topic]))
    creator.start()
    consumer = Consumer(consumer_config(settings, group_id="watermarks-test"))
    try:
        started = time.monotonic()
        assert watermarks(consumer, [(topic, 0)], timeout=20) == {(topic, 0): (0, 0)}
        assert time.monotonic() - started >= 1.0
    finally:
        creator.join()
        consumer.close()
