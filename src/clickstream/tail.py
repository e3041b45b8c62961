"""``clickstream results tail``: the result topic, a line per window, as seed 001's console
consumer printed it.

The seed's Spark job wrote, for each second, the counts of that second as a JSON list of
one-key objects (``[{"0":12},{"1":9},{"2":3}]``: gender code to shoppers), and its consumer
printed each record's value. The count jobs here write one record per (metric, window, key),
again each micro-batch that adds to the window (update mode). So the tail gathers a window's
newest counts and prints the window once it has been quiet for ``settle_s`` (the count jobs
write every ``jobs.count_trigger_s``), in window order: a window still settling holds back the
later ones. A count that comes later (a late event) prints the window again, with its new
counts.

``shop.gender`` keys are printed as the seed's codes (``female`` -> ``"0"``, ``male`` -> ``"1"``,
``unknown`` -> ``"2"``); other metrics' keys as they are.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from clickstream.errors import ClickstreamError, KafkaUnavailableError
from clickstream.events.results import WindowCount
from clickstream.events.shop import GENDERS
from clickstream.kafka.config import consumer_config
from clickstream.settings import Settings

SEED_KEYS: dict[str, dict[str, str]] = {
    "shop.gender": {label: str(code) for code, label in GENDERS.items()},
}
"""Keys printed as the seed printed them (its gender codes)."""
DEFAULT_METRIC = "shop.gender"
SETTLE_S = 1.0
POLL_S = 0.2
KEPT_WINDOWS = 10_000
"""Printed windows remembered (to print a window whole again when a late count comes); the
oldest are forgotten beyond this."""
_DECODER = msgspec.json.Decoder(WindowCount)


def seed_line(metric: str, counts: Mapping[str, int]) -> str:
    """A window's counts as the seed's consumer printed them: ``[{"0":12},{"1":9}]``, in key
    order."""
    names = SEED_KEYS.get(metric, {})
    pairs = sorted((names.get(key, key), count) for key, count in counts.items())
    return msgspec.json.encode([{key: count} for key, count in pairs]).decode()


def window_time(window_start_ms: int) -> str:
    """A window's start as ISO 8601 UTC (``2026-12-06T10:00:01Z``)."""
    moment = datetime.fromtimestamp(window_start_ms / 1000, UTC)
    text = moment.isoformat(timespec="milliseconds" if window_start_ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


@dataclass
class TailStats:
    lines: int = 0
    records: int = 0
    """Window counts of the metric read."""
    skipped: int = 0
    """Records that were not window counts."""


@dataclass
class _Window:
    counts: dict[str, int] = field(default_factory=dict)
    changed_at: float = 0.0


class ResultsTail:
    """Reads ``topics.results`` (no consumer group, nothing committed) from its end, or from its
    start with ``from_beginning``, and calls ``emit(window_start_ms, line)`` per settled
    window of ``metric``. From the start, nothing is printed before every partition has been
    read up to where it ended when the tail began: a window's keys may sit in several
    partitions, and one answering later must not leave it printed half-counted."""

    def __init__(
        self,
        settings: Settings,
        metric: str = DEFAULT_METRIC,
        *,
        from_beginning: bool = False,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.results
        self.metric = metric
        self.from_beginning = from_beginning
        self.settle_s = settle_s
        self.stats = TailStats()
        self._windows: dict[int, _Window] = {}
        self._backlog: dict[int, int] = {}
        """partition -> the offset it ended at when the tail began, until read that far."""

    def run(
        self,
        emit: Callable[[int, str], None],
        stop: threading.Event,
        count: int | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> TailStats:
        """Print until ``stop`` is set or ``count`` lines were emitted; windows still waiting
        to settle are printed at the end. ``on_wait`` hears, once, that the topic is missing."""
        config = consumer_config(self.settings, f"{self.settings.kafka.client_id}-tail")
        consumer = Consumer({**config, "enable.partition.eof": False})
        try:
            self._assign(consumer, stop, on_wait)
            while not stop.is_set() and not self._done(count):
                self._read(consumer)
                self._emit(emit, count, settled_only=True)
            self._emit(emit, count, settled_only=False)
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
        return self.stats

    def _done(self, count: int | None) -> bool:
        return count is not None and self.stats.lines >= count

    def _assign(
        self, consumer: Consumer, stop: threading.Event, on_wait: Callable[[str], None] | None
    ) -> None:
        said = False
        timeout = min(self.settings.kafka.timeout_s, 5.0)
        while not stop.is_set():
            try:
                metadata = consumer.list_topics(self.topic, timeout=timeout)
            except KafkaException as exc:
                raise KafkaUnavailableError(
                    f"Kafka at {self.settings.kafka.bootstrap_servers} does not answer: {exc}"
                ) from None
            info = metadata.topics.get(self.topic)
            if info is not None and info.error is None and info.partitions:
                start = OFFSET_BEGINNING if self.from_beginning else OFFSET_END
                partitions = [TopicPartition(self.topic, p, start) for p in sorted(info.partitions)]
                if self.from_beginning:
                    for tp in partitions:
                        low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
                        if high > low:
                            self._backlog[tp.partition] = high
                consumer.assign(partitions)
                return
            if not said and on_wait is not None:
                on_wait(f"waiting for topic {self.topic} (the count jobs create it)")
                said = True
            stop.wait(1.0)

    def _read(self, consumer: Consumer) -> None:
        msg = consumer.poll(POLL_S)
        while msg is not None:
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise ClickstreamError(f"reading {self.topic}: {error.str()}")
            else:
                value = msg.value()
                if value is not None:  # a tombstone has nothing to print
                    self._take(value)
            msg = consumer.poll(0)
        if self._backlog:  # the consumer's position passes control records (transactions) too
            read = consumer.position([TopicPartition(self.topic, p) for p in self._backlog])
            for tp in read:
                if tp.offset >= self._backlog[tp.partition]:
                    del self._backlog[tp.partition]

    def _take(self, value: bytes) -> None:
        try:
            row = _DECODER.decode(value)
        except msgspec.DecodeError:
            self.stats.skipped += 1
            return
        if row.metric != self.metric:
            return
        self.stats.records += 1
        window = self._windows.setdefault(row.window_start, _Window())
        window.counts[row.key] = row.count
        window.changed_at = time.monotonic()

    def _emit(
        self, emit: Callable[[int, str], None], count: int | None, settled_only: bool
    ) -> None:
        if settled_only and self._backlog:  # the history is not all read yet
            return
        now = time.monotonic()
        for start in sorted(self._windows):
            if self._done(count):
                return
            window = self._windows[start]
            if window.changed_at == 0.0:  # printed, nothing new since
                continue
            if settled_only and now - window.changed_at < self.settle_s:
                break  # the windows after it wait: lines come in window order
            emit(start, seed_line(self.metric, window.counts))
            window.changed_at = 0.0
            self.stats.lines += 1
        for start in sorted(self._windows)[: max(0, len(self._windows) - KEPT_WINDOWS)]:
            if self._windows[start].changed_at == 0.0:
                del self._windows[start]
