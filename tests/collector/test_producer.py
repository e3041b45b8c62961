"""The collector's asyncio producer against the real broker: a request is answered only when
Kafka acknowledged all of its records, and never hangs when Kafka does not answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from clickstream.broker.embedded import free_port
from clickstream.collector.producer import AsyncProducer
from clickstream.errors import KafkaUnavailableError
from clickstream.settings import Settings
from tests.conftest import read_topic


def test_concurrent_requests_return_once_every_record_is_in_kafka(
    settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()

    sizes = [1, 100, 7, 1, 250] * 8

    async def run() -> list[Any]:
        producer = AsyncProducer(settings, ack_timeout_s=10)
        await producer.start()
        try:

            async def request(n: int, size: int) -> None:
                records = [(topic, b"k%d" % n, b'{"r":%d,"i":%d}' % (n, i)) for i in range(size)]
                await producer.send_many(records)

            await asyncio.gather(*(request(n, s) for n, s in enumerate(sizes)))
            assert producer.unacknowledged() == 0
            # Read while the producer is still open: nothing is left for close() to flush.
            return await asyncio.to_thread(read_topic, settings, topic)
        finally:
            await producer.close()

    stored = asyncio.run(run())
    assert len(stored) == sum(sizes)
    assert len({(v["r"], v["i"]) for _, v in stored}) == len(stored)


def test_unreachable_kafka_fails_the_request_within_the_ack_timeout(settings: Settings) -> None:
    dead = settings.with_bootstrap(f"127.0.0.1:{free_port()}")

    async def run() -> float:
        producer = AsyncProducer(dead, ack_timeout_s=1.5)
        await producer.start()
        started = time.monotonic()
        try:
            with pytest.raises(KafkaUnavailableError):
                await producer.send_many([("t", b"k", b"v")] * 3)
            return time.monotonic() - started
        finally:
            await producer.close(timeout=1)

    elapsed = asyncio.run(run())
    assert elapsed < 1.5 + 2.0
    assert elapsed > 1.0  # it waited for Kafka, it did not give up at once
