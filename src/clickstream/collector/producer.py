"""An asyncio face on the Kafka producer: ``await send(...)`` returns once Kafka acknowledged.

Delivery reports are served by one background thread; their results are handed to the event
loop in bulk (one wake-up per poll, not per record). A fatal producer error, or records that
timed out (the broker may have lost the idempotent producer's state, as the embedded broker
does when restarted), replace the producer with a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from clickstream.errors import KafkaUnavailableError
from clickstream.kafka.config import LOGGER, producer_config
from clickstream.settings import Settings


class AsyncProducer:
    def __init__(self, settings: Settings, ack_timeout_s: float | None = None) -> None:
        self.ack_timeout_s = ack_timeout_s or settings.collector.ack_timeout_s
        self._config = producer_config(
            settings,
            **{
                # librdkafka gives up on a record when the client stops waiting for it, so a
                # record answered with 503 is not written later behind the client's back.
                "message.timeout.ms": int(self.ack_timeout_s * 1000),
                "linger.ms": 2,
                "error_cb": self._on_error,
            },
        )
        self._producer = Producer(self._config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: list[tuple[asyncio.Future[None], KafkaError | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew = False
        self.kafka_up = True
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
        self._thread.start()

    async def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)
        self._producer.flush(timeout)

    # -- sending ---------------------------------------------------------------------------------

    async def send_many(
        self, records: Sequence[tuple[str, bytes, bytes, *tuple[Any, ...]]]
    ) -> None:
        """Produce (topic, key, value, ...) records; return when Kafka acknowledged all of them.

        Raises :class:`KafkaUnavailableError` if any was not acknowledged in time.
        """
        assert self._loop is not None, "start() the producer first"
        futures: list[asyncio.Future[None]] = []
        for topic, key, value, *_ in records:
            future: asyncio.Future[None] = self._loop.create_future()
            try:
                self._producer.produce(
                    topic, value=value, key=key, on_delivery=self._callback(future)
                )
            except BufferError:
                raise KafkaUnavailableError("the producer queue is full") from None
            except Exception as exc:  # a fatal producer: replaced by the delivery thread
                raise KafkaUnavailableError(f"cannot produce: {exc}") from None
            futures.append(future)
        try:
            async with asyncio.timeout(self.ack_timeout_s + 1.0):
                if len(futures) == 1:
                    await futures[0]
                    return
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            raise KafkaUnavailableError(
                f"Kafka did not acknowledge within {self.ack_timeout_s:g}s"
            ) from None
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _callback(self, future: asyncio.Future[None]) -> Any:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None and err.code() == KafkaError._MSG_TIMED_OUT:
                # An idempotent producer whose records timed out never recovers on a broker
                # that lost its state (the embedded broker after a restart): start afresh.
                self._renew = True
            with self._lock:
                self._done.append((future, err))

        return delivered

    def _on_error(self, err: KafkaError) -> None:
        self.last_error = err.str()
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.kafka_up = False
        if err.fatal():
            self._renew = True

    # -- the delivery thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.02)
                self._hand_over()
                if self._renew:
                    self._replace()
            except Exception:  # the delivery thread must outlive any one bad poll
                LOGGER.exception("kafka delivery thread")
                time.sleep(0.1)

    def _hand_over(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        if done and self._loop is not None:
            if any(err is None for _, err in done):
                self.kafka_up = True
            self._loop.call_soon_threadsafe(_resolve, done)

    def _replace(self) -> None:
        """Fail what the old producer holds and start a new one."""
        LOGGER.warning("replacing the Kafka producer (last error: %s)", self.last_error)
        old = self._producer
        self._producer = Producer(self._config)
        self._renew = False
        for call in (old.purge, lambda: old.poll(0)):
            with contextlib.suppress(Exception):
                call()
        self._hand_over()


def _resolve(done: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    for future, err in done:
        if future.done():
            continue
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(KafkaUnavailableError(err.str()))
