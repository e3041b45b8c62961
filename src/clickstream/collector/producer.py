"""An asyncio face on the Kafka producer: ``await send_many(...)`` returns once Kafka
acknowledged every record, and raises once librdkafka has given up on one.

Delivery reports are served on the event loop itself: ``Producer.poll(0)`` runs every
``BUSY_POLL_S`` (1 ms) while records are in flight and every ``IDLE_POLL_S`` when none are (for
error reports). Each request waits on one future, resolved by the last of its records' reports;
no second thread, no lock and no cross-thread wake-up per acknowledgement.

The answer comes from the delivery reports, never from a timer of our own: librdkafka gives up
on a record ``message.timeout.ms`` after it was produced (:func:`delivery_budget_ms`, a margin
under the request's ``ack_timeout_s``), and once it has, the record is never sent again (the
idempotent producer drains the partition and bumps its epoch). A timer that answered first
would race a record that librdkafka still delivers. What no one can know is whether a record
that was on the wire when the broker went away was written (librdkafka's "possibly persisted"):
see ``docs/architecture.md``. A request whose reports are overdue by far (``BACKSTOP_S``) is
failed anyway, logged as a bug. A fatal producer error replaces the producer with a new one.
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

DELIVERY_MARGIN_S = 1.0
"""How much sooner than the answer deadline librdkafka gives up on a record, at most (a quarter
of the deadline when that is shorter): its report comes within milliseconds of
``message.timeout.ms``, and a record whose topic's metadata is not known yet is timed out by a
scan that runs once a second."""
BACKSTOP_S = 10.0
"""A request without all its reports this long after its answer deadline is failed (a bug)."""
BUSY_POLL_S = 0.001
"""How often delivery reports are served while records are in flight."""
IDLE_POLL_S = 0.1
"""How often the producer is polled with nothing in flight (error reports, kafka_up)."""


class _Request:
    """The records of one request: a future resolved when the last report arrives."""

    __slots__ = ("bytes", "deadline", "error", "future", "left", "owner")

    def __init__(
        self, owner: AsyncProducer, future: asyncio.Future[None], deadline: float, size: int
    ) -> None:
        self.owner = owner
        self.future = future
        self.left = 0
        self.error: KafkaError | None = None
        self.deadline = deadline
        self.bytes = size

    def delivered(self, err: KafkaError | None, _msg: Message) -> None:
        self.left -= 1
        if err is not None:
            self.error = self.error or err
        else:
            self.owner.kafka_up = True
        if self.left == 0:
            self.owner._queued_bytes -= self.bytes
        if self.left <= 0 and not self.future.done():
            if self.error is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(KafkaUnavailableError(self.error.str()))

    def fail(self, message: str) -> None:
        if not self.future.done():
            self.future.set_exception(KafkaUnavailableError(message))


def delivery_budget_ms(ack_timeout_s: float) -> int:
    """``message.timeout.ms`` for an answer deadline: librdkafka's verdict on every record of a
    request arrives before the request's deadline."""
    return max(1, int((ack_timeout_s - min(DELIVERY_MARGIN_S, ack_timeout_s / 4)) * 1000))


QUEUE_MAX_MESSAGES = 100_000
QUEUE_MAX_KBYTES = 1_048_576
"""What the producer holds at most (records; KiB of keys and values): a request that would not
fit is refused before any of its records is produced, so a batch is never half produced."""


class AsyncProducer:
    def __init__(self, settings: Settings, ack_timeout_s: float | None = None) -> None:
        self.ack_timeout_s = ack_timeout_s or settings.collector.ack_timeout_s
        self._config = producer_config(
            settings,
            **{
                # librdkafka gives up on a record before the client stops waiting for it, and
                # its report is the answer: a record answered with 503 is not written later.
                "message.timeout.ms": delivery_budget_ms(self.ack_timeout_s),
                "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
                "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
                "linger.ms": 2,
                # Back within a second of the broker: librdkafka's default backs off up to
                # 10 s, and every event in between would be answered 503.
                "reconnect.backoff.max.ms": 1000,
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
        self._queued_bytes = 0
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
        size = sum(len(record[1]) + len(record[2]) for record in records)
        if (
            len(self._producer) + len(records) > QUEUE_MAX_MESSAGES
            or self._queued_bytes + size > QUEUE_MAX_KBYTES * 1024
        ):
            raise KafkaUnavailableError("the producer queue is full")
        deadline = time.monotonic() + self.ack_timeout_s + BACKSTOP_S
        request = _Request(self, loop.create_future(), deadline, size)
        produce = self._producer.produce
        delivered = request.delivered
        self._queued_bytes += size  # until the last report (or now, if nothing was produced)
        try:
            for topic, key, value, *_ in records:
                produce(topic, value=value, key=key, on_delivery=delivered)
                request.left += 1
        except BufferError:
            # Over the queue's limits after all: the records produced so far still report, and
            # the answer waits for them (no 503 while some may still be written).
            request.error = KafkaError(KafkaError._QUEUE_FULL, "the producer queue is full")
        except Exception as exc:  # a fatal producer: replaced by the next poll
            self._abandon(request)
            self._renew = True
            raise KafkaUnavailableError(f"cannot produce: {exc}") from None
        finally:
            if request.left == 0:
                self._queued_bytes -= size
        if request.left == 0:
            if request.error is not None:
                raise KafkaUnavailableError(request.error.str())
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

    async def check_kafka(self, timeout_s: float = 1.0) -> bool:
        """Whether Kafka is up. Once it was seen down, only a delivery or this metadata request
        can tell it is back: with no traffic, nothing else would (``/healthz`` stayed 503)."""
        if self.kafka_up:
            return True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._producer.list_topics, None, timeout_s)
        except Exception as exc:  # KafkaException: still down
            self.last_error = str(exc)
            return False
        self.kafka_up = True
        return True

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
        """Forget answered requests at the front; fail those whose reports are overdue by far
        (deadlines grow in the order requests arrive, so only the front needs looking at)."""
        waiting = self._waiting
        now = time.monotonic()
        while waiting:
            head = waiting[0]
            if not head.future.done():
                if head.deadline > now:
                    return
                LOGGER.error(
                    "%d delivery reports overdue by %gs: answering 503 without them",
                    head.left,
                    BACKSTOP_S,
                )
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
