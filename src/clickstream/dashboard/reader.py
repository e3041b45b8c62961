"""The results reader: one background thread consuming the results topic.

It uses ``assign()`` (no consumer group: no join delay, no committed offsets) and hands parsed
records to ``deliver`` in batches: the first record after a quiet spell at once, then at most
one batch per ``coalesce_s``.

Where reading starts: ``offsets_for_times(now - history_s)`` per partition; records whose
Kafka timestamp is older than that are skipped too (a broker may answer an earlier offset).

A record that is not a window count is counted and skipped. Until the topic exists (the count
jobs create it) the reader looks for it every second and logs one line. When Kafka does not
answer, ``kafka`` is ``"down"`` with the reason in ``last_error``, and the reader keeps trying.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from clickstream.dashboard.metrics import DashboardMetrics
from clickstream.dashboard.windows import RowKey
from clickstream.errors import KafkaUnavailableError
from clickstream.events.results import WindowCount
from clickstream.kafka.config import consumer_config
from clickstream.kafka.offsets import watermarks
from clickstream.settings import Settings

LOGGER = logging.getLogger("clickstream.dashboard")

KafkaState = Literal["connecting", "up", "down"]

RETRY_S = 1.0
"""How often a missing topic or an unreachable cluster is checked again."""
REFRESH_S = 10.0
"""How often the topic's metadata is read again (new partitions, a deleted topic)."""
POLL_S = 0.2
MAX_BATCH = 5000

_DECODER = msgspec.json.Decoder(WindowCount)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ResultsReader:
    """Reads ``settings.topics.results``; calls ``deliver(rows)`` and ``on_state()`` from its
    thread (rows oldest first; ``on_state`` when ``kafka`` or ``topic_ready`` changed)."""

    def __init__(
        self,
        settings: Settings,
        metrics: DashboardMetrics,
        deliver: Callable[[list[WindowCount]], None],
        on_state: Callable[[], None],
        coalesce_s: float = 0.1,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.results
        self.history_ms = settings.dashboard.history_s * 1000
        self.metrics = metrics
        self.deliver = deliver
        self.on_state = on_state
        self.coalesce_s = coalesce_s
        overrides = {
            "error_cb": self._on_error,
            "enable.partition.eof": False,
            # Come back within seconds once Kafka answers again (librdkafka's default: 10 s).
            "reconnect.backoff.max.ms": 2000,
        }
        group = f"{settings.kafka.client_id}-dashboard"
        self._config = consumer_config(settings, group, **overrides)  # raises if unset
        # Written by the thread, read by others (single values: no lock needed).
        self.kafka: KafkaState = "connecting"
        self.topic_ready = False
        self.last_error: str | None = None
        self.received = 0
        self.bad_records = 0
        self.last_result_ms: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Thread-only state.
        self._partitions: set[int] = set()
        self._since_ms = 0
        self._pending: dict[RowKey, WindowCount] = {}
        self._last_flush = 0.0
        self._next_check = 0.0
        self._said_waiting = False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the results reader is already started")
        self._thread = threading.Thread(target=self._run, name="dashboard-results", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the consumer (blocks up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            consumer = Consumer(self._config)
        except Exception as exc:
            LOGGER.exception("cannot create the results consumer")
            self._set_state("down", f"cannot create the consumer: {exc}")
            return
        try:
            while not self._stop.is_set():
                try:
                    self._step(consumer)
                except Exception as exc:  # the reader must outlive any one bad step
                    LOGGER.exception("dashboard results reader")
                    self._set_state("down", f"{type(exc).__name__}: {exc}")
                    self._stop.wait(RETRY_S)
            if self._pending:
                self._flush()
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _step(self, consumer: Consumer) -> None:
        if time.monotonic() >= self._next_check:
            self._check(consumer)
            ready = self.kafka == "up" and self._partitions
            self._next_check = time.monotonic() + (REFRESH_S if ready else RETRY_S)
        if not self._partitions:
            self._stop.wait(max(0.0, self._next_check - time.monotonic()))
            return
        timeout = POLL_S
        if self._pending:
            timeout = max(0.0, self._last_flush + self.coalesce_s - time.monotonic())
        msg = consumer.poll(timeout)
        handled = 0
        while msg is not None:
            self._handle(msg)
            handled += 1
            if handled >= MAX_BATCH:
                break
            msg = consumer.poll(0)
        if self._pending and time.monotonic() - self._last_flush >= self.coalesce_s:
            self._flush()

    def _check(self, consumer: Consumer) -> None:
        """Read the topic's metadata: is Kafka up, does the topic exist, which partitions."""
        # Short while Kafka is not up, so that stopping never waits long.
        timeout = min(self.settings.kafka.timeout_s, 5.0 if self.kafka == "up" else 2.0)
        try:
            metadata = consumer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            self._set_state("down", _reason(exc))
            return
        info = metadata.topics.get(self.topic)
        if info is None or info.error is not None:
            if self._partitions:  # deleted: start over once it is back
                consumer.unassign()
                self._partitions.clear()
            if not self._said_waiting:
                LOGGER.warning("waiting for topic %s (the count jobs create it)", self.topic)
                self._said_waiting = True
            self._set_state("up", None, topic_ready=False)
            return
        new = sorted(set(info.partitions) - self._partitions)
        if new:
            if not self._partitions:
                self._since_ms = now_ms() - self.history_ms
                consumer.assign(self._start_offsets(consumer, new, self._since_ms))
            else:  # partitions added later: all their records are new
                consumer.incremental_assign(
                    [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new]
                )
            self._partitions.update(new)
        if self._said_waiting:
            LOGGER.warning("topic %s found: reading results", self.topic)
            self._said_waiting = False
        self._set_state("up", None, topic_ready=True)

    def _start_offsets(
        self, consumer: Consumer, partitions: list[int], since_ms: int
    ) -> list[TopicPartition]:
        wanted = [TopicPartition(self.topic, p, since_ms) for p in partitions]
        timeout = min(self.settings.kafka.timeout_s, 5.0)
        keys = [(self.topic, p) for p in partitions]
        try:  # the ends before looking: a record written meanwhile is read
            ends = {p: high for (_, p), (_, high) in watermarks(consumer, keys, timeout).items()}
        except KafkaUnavailableError:
            ends = {}
        try:
            found = consumer.offsets_for_times(wanted, timeout=timeout)
        except KafkaException as exc:
            LOGGER.info("offsets_for_times failed (%s): reading %s from the start", exc, self.topic)
            found = []
        offsets = {tp.partition: tp for tp in found if tp.error is None}
        start = []
        for p in partitions:
            tp = offsets.get(p)
            if tp is None:
                offset = OFFSET_BEGINNING
            elif tp.offset < 0:  # no record that recent
                offset = ends.get(p, OFFSET_END)
            else:
                offset = tp.offset
            start.append(TopicPartition(self.topic, p, offset))
        return start

    def _handle(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                self._next_check = 0.0
            elif error.code() != KafkaError._PARTITION_EOF:
                self.last_error = error.str()
            return
        if self.kafka != "up":
            self._set_state("up", None)
        kind, timestamp = msg.timestamp()
        if kind != TIMESTAMP_NOT_AVAILABLE and timestamp < self._since_ms:
            return
        value = msg.value()
        if value is None:  # a tombstone (compacted topic): nothing to show
            return
        try:
            row = _DECODER.decode(value)
            if row.window_end <= row.window_start or row.count < 0:
                raise ValueError("window_end must follow window_start, count must be >= 0")
        except (msgspec.DecodeError, ValueError) as exc:
            self.bad_records += 1
            self.metrics.bad_records.inc()
            log = LOGGER.warning if self.bad_records == 1 else LOGGER.debug
            log(
                "skipped a record that is not a window count (%s[%s]@%s): %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
            return
        self.received += 1
        self.metrics.results.inc()
        self.last_result_ms = now_ms()
        self._pending[(row.metric, row.window_start, row.key)] = row

    def _flush(self) -> None:
        rows = list(self._pending.values())
        self._pending = {}
        self._last_flush = time.monotonic()
        self.deliver(rows)

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (served inside ``poll``, on the reader thread)."""
        self.last_error = error.str()
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._set_state("down", error.str())
            self._next_check = 0.0

    def _set_state(
        self, kafka: KafkaState, error: str | None, topic_ready: bool | None = None
    ) -> None:
        before = (self.kafka, self.topic_ready)
        if error is not None:
            self.last_error = error
        if topic_ready is not None:
            self.topic_ready = topic_ready
        self.kafka = kafka
        servers = self.settings.kafka.bootstrap_servers
        if kafka == "down" and before[0] != "down":
            LOGGER.warning("Kafka at %s does not answer: %s", servers, error)
        elif kafka == "up" and before[0] == "down":
            LOGGER.warning("Kafka at %s answers again", servers)
        if (self.kafka, self.topic_ready) != before:
            self.on_state()


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return str(error.str()) if error is not None and hasattr(error, "str") else str(exc)
