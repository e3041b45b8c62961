"""The dead-letter topic, read and replayed (``clickstream dead-letters list`` and ``replay``).

A job sends a record it cannot use to ``topics.dead_letter`` with the reason and where it came
from (:func:`clickstream.streaming.parse.dead_letter_value`): ``reason``, ``sourceTopic``,
``sourcePartition``, ``sourceOffset``, ``sourceTimestamp``, the record's ``value`` (or
``valueBase64`` when it is not UTF-8) and ``valueBytes``, keyed by the record's own key. A
count too large for Kafka is dead-lettered by the sink instead (``targetTopic``): a result, not
an input, so it is listed but never replayed.

Replaying sends the selected records back to their source topic unchanged (value, key, and the
Kafka timestamp they first had, so a check against their arrival judges them as before), after
a fix of settings or code. Each replayed record is noted in the dead-letter topic itself, by a
marker record (key :data:`MARKER_KEY`), so that a later run does not send it again, and
``list`` shows what was replayed. A run reads the topic up to the end it had when the run
began: a record that fails again is dead-lettered again, as a new record after that end, and
is not sent twice by the same run (a later run may send it again, after another fix).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from clickstream.errors import ConfigError, KafkaUnavailableError
from clickstream.kafka.clients import make_producer
from clickstream.kafka.config import consumer_config
from clickstream.kafka.offsets import partitions_of, watermarks
from clickstream.settings import Settings

MARKER_KEY = b"clickstream.replayed"
"""The key of a marker record: ``{"replayed": [[partition, offset], ...], "to": [topic]}``."""
MARKER_PLACES = 20_000
"""Replayed records one marker names at most (a marker stays far below Kafka's 1 MB)."""
POLL_S = 1.0
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Letter(msgspec.Struct, kw_only=True, rename="camel"):
    reason: str = "(no reason given)"
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    source_timestamp: str | int | None = None
    value: str | None = None
    value_base64: str | None = None
    value_bytes: int | None = None
    target_topic: str | None = None


class _Marker(msgspec.Struct):
    replayed: list[tuple[int, int]]
    to: list[str]


_LETTER = msgspec.json.Decoder(_Letter)
_MARKER = msgspec.json.Decoder(_Marker)


@dataclass
class DeadLetter:
    """One dead-lettered record, where it is in the dead-letter topic, and what it was."""

    partition: int
    offset: int
    dead_at_ms: int
    """When it was dead-lettered (the dead-letter record's Kafka timestamp)."""
    reason: str
    source_topic: str | None
    """Where the record came from; for a result too large for Kafka, where it was going."""
    key: bytes | None
    value: bytes | None
    """The record as it was, when the dead letter holds all of it."""
    source_timestamp_ms: int | None
    is_result: bool = False

    @property
    def replayable(self) -> bool:
        return not self.is_result and self.source_topic is not None and self.value is not None

    @property
    def place(self) -> tuple[int, int]:
        return self.partition, self.offset


@dataclass
class Group:
    """Dead letters of one reason and source topic."""

    reason: str
    source: str
    count: int = 0
    replayed: int = 0
    not_replayable: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, letter: DeadLetter, replayed: bool) -> None:
        self.count += 1
        self.replayed += replayed
        self.not_replayable += not letter.replayable
        at = letter.dead_at_ms
        self.first_ms = at if self.first_ms is None else min(self.first_ms, at)
        self.last_ms = at if self.last_ms is None else max(self.last_ms, at)


@dataclass
class Selection:
    """Which dead letters: ``reason`` a case-insensitive part of the reason, ``source`` the
    source topic, ``since_ms`` dead-lettered at or after."""

    reason: str | None = None
    source: str | None = None
    since_ms: int | None = None

    def __call__(self, letter: DeadLetter) -> bool:
        if self.reason is not None and self.reason.lower() not in letter.reason.lower():
            return False
        if self.source is not None and letter.source_topic != self.source:
            return False
        return self.since_ms is None or letter.dead_at_ms >= self.since_ms


@dataclass
class Scan:
    """What one read of the dead-letter topic found (up to its end when the read began)."""

    letters: list[DeadLetter] = field(default_factory=list)
    replayed: set[tuple[int, int]] = field(default_factory=set)
    unreadable: int = 0
    """Records of the topic that are neither a dead letter nor a marker."""

    def groups(self) -> list[Group]:
        found: dict[tuple[str, str], Group] = {}
        for letter in self.letters:
            source = letter.source_topic or "?"
            if letter.is_result:
                source = f"result for {source}"
            group = found.setdefault((letter.reason, source), Group(letter.reason, source))
            group.add(letter, letter.place in self.replayed)
        return sorted(found.values(), key=lambda g: (-g.count, g.reason, g.source))


def parse_since(text: str, now_ms: int | None = None) -> int:
    """``--since``: an ISO 8601 time (UTC without a zone) or an age (``30m``, ``2h``, ``7d``)
    -> epoch milliseconds."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now_ms - int(float(relative[1]) * _UNITS[relative[2]] * 1000)
    try:
        return _iso_ms(text)
    except ValueError:
        raise ConfigError(
            f"--since takes a time (2026-12-06T10:00:00Z) or an age (30m, 2h, 7d), not {text!r}"
        ) from None


def _iso_ms(text: str) -> int:
    """An ISO 8601 time (UTC when it has no zone) as epoch milliseconds; ValueError if not."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def scan(settings: Settings, since_ms: int | None = None) -> Scan:
    """Read ``topics.dead_letter`` from its start (or from ``since_ms``: markers are read from
    the start, they are few) up to its end now."""
    topic = settings.topics.dead_letter
    timeout = settings.kafka.timeout_s
    consumer = Consumer(consumer_config(settings, None, **{"enable.partition.eof": False}))
    found = Scan()
    try:
        keys = partitions_of(consumer, [topic], timeout)
        ends = {p: high for (_, p), (_, high) in watermarks(consumer, keys, timeout).items()}
        for partition, end in sorted(ends.items()):
            for msg_partition, offset, at, key, value in _read(consumer, topic, partition, end):
                if key == MARKER_KEY:
                    _take_marker(found, value)
                    continue
                if since_ms is not None and at < since_ms:
                    continue
                letter = _letter(msg_partition, offset, at, key, value)
                if letter is None:
                    found.unreadable += 1
                else:
                    found.letters.append(letter)
    finally:
        consumer.close()
    return found


def _read(
    consumer: Consumer, topic: str, partition: int, end: int
) -> Iterator[tuple[int, int, int, bytes | None, bytes]]:
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    position = -1
    idle_until = time.monotonic() + 30
    while position < end - 1:
        msg = consumer.poll(POLL_S)
        if msg is None:
            if time.monotonic() > idle_until:
                raise KafkaUnavailableError(
                    f"{topic}[{partition}]: read up to offset {position}, not to its end {end}"
                )
            continue
        idle_until = time.monotonic() + 30
        if msg.error() is not None:
            continue
        position = msg.offset() or 0
        if position >= end:
            break
        yield partition, position, msg.timestamp()[1], msg.key(), msg.value() or b""


def _take_marker(found: Scan, value: bytes) -> None:
    try:
        marker = _MARKER.decode(value)
    except msgspec.DecodeError:
        found.unreadable += 1
        return
    found.replayed.update((int(p), int(o)) for p, o in marker.replayed)


def _letter(
    partition: int, offset: int, at: int, key: bytes | None, value: bytes
) -> DeadLetter | None:
    try:
        letter = _LETTER.decode(value)
    except msgspec.DecodeError:
        return None
    if letter.target_topic is not None:
        return DeadLetter(partition, offset, at, letter.reason, letter.target_topic, key, None,
                          None, is_result=True)  # fmt: skip
    original: bytes | None = None
    if letter.value_base64 is not None:
        original = base64.b64decode(letter.value_base64)
    elif letter.value is not None:
        original = letter.value.encode()
    if (
        original is not None
        and letter.value_bytes is not None
        and len(original) != letter.value_bytes
    ):
        original = None  # cut to the first 64 KiB: not the record as it was
    if original is None and letter.value_bytes == 0:
        original = b""
    return DeadLetter(
        partition, offset, at, letter.reason, letter.source_topic, key, original,
        _source_time(letter.source_timestamp),
    )  # fmt: skip


def _source_time(value: str | int | None) -> int | None:
    """The source record's Kafka timestamp (Spark writes it as an ISO time) as epoch ms."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return _iso_ms(value)
    except ValueError:
        return None


@dataclass
class ReplayStats:
    selected: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    """Records sent back, by source topic."""
    already: int = 0
    """Selected records a run before this one sent back already (``again`` sends them)."""
    not_replayable: int = 0
    """Results too large for Kafka, records cut to 64 KiB, records of no known source."""

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def replay(
    settings: Settings,
    selection: Selection,
    *,
    again: bool = False,
    dry_run: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Send the selected dead letters back to their source topics (see the module's text);
    return what was done. ``dry_run`` sends nothing and notes nothing."""
    found = scan(settings, selection.since_ms)
    stats = ReplayStats()
    chosen: list[DeadLetter] = []
    for letter in found.letters:
        if not selection(letter):
            continue
        stats.selected += 1
        if not letter.replayable:
            stats.not_replayable += 1
        elif letter.place in found.replayed and not again:
            stats.already += 1
        else:
            chosen.append(letter)
    if dry_run or not chosen:
        for letter in chosen:
            topic = str(letter.source_topic)
            stats.sent[topic] = stats.sent.get(topic, 0) + 1
        return stats
    producer = make_producer(settings)
    for done, letter in enumerate(chosen, 1):
        topic = str(letter.source_topic)
        producer.produce(topic, letter.value, letter.key, timestamp_ms=letter.source_timestamp_ms)
        stats.sent[topic] = stats.sent.get(topic, 0) + 1
        if on_progress is not None and done % 1000 == 0:
            on_progress(done)
    producer.flush()  # raises unless every record was acknowledged: then no marker is written
    for first in range(0, len(chosen), MARKER_PLACES):
        places = [letter.place for letter in chosen[first : first + MARKER_PLACES]]
        marker = _Marker(places, sorted(stats.sent))
        producer.produce(settings.topics.dead_letter, msgspec.json.encode(marker), MARKER_KEY)
    producer.flush()
    return stats
