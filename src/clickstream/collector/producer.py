"""An asyncio face on the Kafka producer: ``await send_many(...)`` returns once Kafka
acknowledged every record.

Delivery reports are served on the event loop itself: ``Producer.poll(0)`` runs every
``BUSY_POLL_S`` (1 ms) while records are in flight and every ``IDLE_POLL_S`` when none are (for
error reports). Each request waits on one future, resolved
by the last of its records' reports; no second thread, no lock and no cross-thread wake-up per
acknowledgement. Requests are failed in order of age once past their deadline (records' own
``message.timeout.ms`` normally fails them first). A fatal producer error, or records that
timed out (the broker may no longer know the idempotent producer's sequence numbers), replace
the producer with a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from clickstream.errors import KafkaUnavailableError
from clickstream.kafka.config import LOGGER, producer_config
from clickstream.settings import Settings

BUSY_POLL_S = 0.001
"""How often delivery reports are served while records are in flight."""
IDLE_POLL_S = 0.1
"""How often the producer is polled with nothing in flight (error reports, kafka_up)."""


class _Request:
    """The records of one request: a future resolved when the last report arrives."""

    __slots__ = ("deadline", "error", "future", "left", "owner")

    def __init__(self, owner: AsyncProducer, future: asyncio.Future[None], deadline: float):
        self.owner = owner
        self.future = future
        self.left = 0
        self.error: KafkaError | None = None
        self.deadline = deadline

    def delivered(self, err: KafkaError | None, _msg: Message) -> None:
        self.left -= 1
        if err is not None:
            self.error = self.error or err
            if err.code() == KafkaError._MSG_TIMED_OUT:
                # An idempotent producer whose records timed out may not recover its
                # sequence numbers with the broker: start afresh.
                self.owner._renew = True
        else:
            self.owner.kafka_up = True
        if self.left <= 0 and not self.future.done():
            if self.error is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(KafkaUnavailableError(self.error.str()))

    def fail(self, message: str) -> None:
        if not self.future.done():
            self.future.set_exception(KafkaUnavailableError(message))


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
        self._waiting: deque[_Request] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._closed = False
        self._renew = False
        self.kafka_up = True
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule(IDLE_POLL_S)

    async def close(self, timeout: float = 10.0) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._producer.flush(timeout)

    def unacknowledged(self) -> int:
        """Records handed to the producer whose delivery report has not been served yet."""
        return len(self._producer)

    # -- sending ---------------------------------------------------------------------------------

    async def send_many(
        self, records: Sequence[tuple[str, bytes, bytes, *tuple[Any, ...]]]
    ) -> None:
        """Produce (topic, key, value, ...) records; return when Kafka acknowledged all of them.

        Raises :class:`KafkaUnavailableError` if any was not acknowledged in time.
        """
        loop = self._loop
        assert loop is not None, "start() the producer first"
        request = _Request(self, loop.create_future(), time.monotonic() + self.ack_timeout_s + 1)
        produce = self._producer.produce
        delivered = request.delivered
        try:
            for topic, key, value, *_ in records:
                produce(topic, value=value, key=key, on_delivery=delivered)
                request.left += 1
        except BufferError:
            self._abandon(request)
            raise KafkaUnavailableError("the producer queue is full") from None
        except Exception as exc:  # a fatal producer: replaced by the next poll
            self._abandon(request)
            self._renew = True
            raise KafkaUnavailableError(f"cannot produce: {exc}") from None
        if request.left == 0:
            return
        self._waiting.append(request)
        if not self._busy:
            self._schedule(BUSY_POLL_S)
        await request.future

    def _abandon(self, request: _Request) -> None:
        """Fail a request whose records could not all be produced; any already produced still
        report to it, but nothing waits for them."""
        request.future.add_done_callback(_retrieve)
        request.fail("abandoned")

    def _on_error(self, err: KafkaError) -> None:
        self.last_error = err.str()
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.kafka_up = False
        if err.fatal():
            self._renew = True

    # -- serving delivery reports on the loop ----------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._closed or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._busy = delay == BUSY_POLL_S
        self._timer = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self._producer.poll(0)
            self._expire()
            if self._renew:
                self._replace()
        except Exception:  # serving reports must outlive any one bad poll
            LOGGER.exception("serving Kafka delivery reports")
        self._schedule(BUSY_POLL_S if self._waiting else IDLE_POLL_S)

    def _expire(self) -> None:
        """Forget answered requests at the front; fail those past their deadline (deadlines
        grow in the order requests arrive, so only the front needs looking at)."""
        waiting = self._waiting
        now = time.monotonic()
        while waiting:
            head = waiting[0]
            if not head.future.done():
                if head.deadline > now:
                    return
                head.fail(f"Kafka did not acknowledge within {self.ack_timeout_s:g}s")
            waiting.popleft()

    def _replace(self) -> None:
        """Fail what the old producer holds and start a new one."""
        LOGGER.warning("replacing the Kafka producer (last error: %s)", self.last_error)
        old = self._producer
        self._producer = Producer(self._config)
        self._renew = False
        for call in (old.purge, lambda: old.poll(0)):
            with contextlib.suppress(Exception):
                call()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an abandoned request's exception as seen (no 'never retrieved' warning)."""
    if not future.cancelled():
        future.exception()
