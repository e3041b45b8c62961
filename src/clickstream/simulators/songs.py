"""Song plays into Kafka: the seed's producer, made real (``clickstream simulate songs``).

:func:`generate_plays` makes :class:`~clickstream.events.songs.SongPlay` events as the seed's
producer does (Faker: a user 20000-100000, one of the artist's ten songs, and a time earlier in
the current month), for one artist or several, each with its own songs; ``times="now"`` stamps
the time of sending instead (the live demo). :func:`play_songs` sends them at a rate, counts
every delivery report (delivered, failed), logs them (logger ``clickstream.simulate.songs``:
failures at WARNING, deliveries at DEBUG; optionally one line each in a file, as the seed's
``producer.log``), and returns the totals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import msgspec
from confluent_kafka import KafkaError, Message

from clickstream.errors import ConfigError, KafkaUnavailableError
from clickstream.events.songs import (
    CATALOG,
    DEFAULT_ARTIST,
    EVENT_TYPE,
    MAX_USER,
    MIN_USER,
    TIME_FORMAT,
    SongPlay,
)
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings

log = logging.getLogger("clickstream.simulate.songs")
Times = Literal["month", "now"]
CHUNK_S = 0.01
_encode = msgspec.json.Encoder().encode


def pick_artists(given: Sequence[str], all_artists: bool = False) -> list[str]:
    """The artists to play: every one of :data:`CATALOG` with ``all_artists``, else those
    ``given`` (default: the seed's), each checked (:func:`check_artists`)."""
    if all_artists and given:
        raise ConfigError("--all-artists and --artist do not go together")
    return check_artists(list(CATALOG) if all_artists else list(given) or [DEFAULT_ARTIST])


def check_artists(names: Sequence[str]) -> list[str]:
    """The artists, each known to :data:`CATALOG`; :class:`ConfigError` names an unknown one."""
    unknown = [name for name in names if name not in CATALOG]
    if unknown:
        raise ConfigError(f"unknown artist {unknown[0]!r}; artists: {', '.join(CATALOG)}")
    if not names:
        raise ConfigError("give at least one artist")
    return list(dict.fromkeys(names))


def generate_plays(
    artists: Sequence[str] = ("tony-allen",), *, times: Times = "month", seed: int | None = None
) -> Iterator[SongPlay]:
    """Endless plays of ``artists`` (in turn), stamped with a random time earlier this month (as
    the seed) or, with ``times="now"``, when made (UTC)."""
    from faker import Faker

    names = check_artists(artists)
    fake = Faker()
    if seed is not None:
        fake.seed_instance(seed)
    turn = 0
    while True:
        artist = names[turn % len(names)]
        turn += 1
        song_id = fake.random_int(min=0, max=9)
        moment = fake.date_time_this_month(tzinfo=UTC) if times == "month" else datetime.now(UTC)
        yield SongPlay(
            user_id=fake.random_int(min=MIN_USER, max=MAX_USER),
            artist=artist,
            song_id=song_id,
            song_name=CATALOG[artist][song_id],
            event_type=EVENT_TYPE,
            timestamp=moment.strftime(TIME_FORMAT),
        )


@dataclass
class PlayStats:
    topic: str
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    interrupted: bool = False

    def summary(self) -> str:
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"sent {self.sent} plays to {self.topic} in {self.elapsed_s:.1f}s ({rate:,.1f}/s): "
            f"{self.delivered} delivered, {self.failed} failed"
            + (f" (first error: {self.first_error})" if self.first_error else "")
        )


def play_songs(
    settings: Settings,
    plays: Iterable[SongPlay],
    *,
    topic: str | None = None,
    rate: float = 1.0,
    count: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[PlayStats], None] | None = None,
    log_file: IO[str] | None = None,
) -> PlayStats:
    """Send ``plays`` to ``topic`` (default ``songs.topic``, created if missing), ``rate`` per
    second (0: flat out), until ``count`` plays, ``duration_s`` seconds, ``stop`` or Ctrl-C;
    then flush and return the delivery counts (failures are counted, not raised)."""
    if not (math.isfinite(rate) and rate >= 0):
        raise ConfigError(f"rate must be >= 0 plays per second, got {rate!r}")
    if count is not None and count < 1:
        raise ConfigError(f"count must be >= 1, got {count!r}")
    name = topic or settings.songs.topic
    ensure_topics(settings, [name])
    producer = make_producer(settings)
    stats = PlayStats(topic=name)
    lock = threading.Lock()

    def report(err: KafkaError | None, msg: Message) -> None:
        with lock:
            if err is None:
                stats.delivered += 1
                line = f"delivered to {msg.topic()}[{msg.partition()}]@{msg.offset()}"
                log.debug("%s: %s", line, msg.value())
            else:
                stats.failed += 1
                stats.first_error = stats.first_error or err.str()
                line = f"failed to deliver to {msg.topic()}: {err.str()}"
                log.warning("%s", line)
            if log_file is not None:
                log_file.write(f"{datetime.now(UTC).strftime(TIME_FORMAT)} {line}\n")

    chunk = max(1, int(rate * CHUNK_S)) if rate else 1000
    began = time.monotonic()
    deadline = began + duration_s if duration_s else math.inf
    try:
        for play in plays:
            if stats.sent % chunk == 0:
                producer.poll(0)
                if progress is not None:
                    progress(stats)
                now = time.monotonic()
                due = began + stats.sent / rate if rate else now
                if (stop is not None and stop.is_set()) or now >= deadline:
                    stats.interrupted = stop is not None and stop.is_set()
                    break
                if due > now:
                    if stop is None:
                        time.sleep(due - now)
                    elif stop.wait(due - now):
                        stats.interrupted = True
                        break
            producer.produce(name, _encode(play), str(play.user_id).encode(), on_delivery=report)
            stats.sent += 1
            if count is not None and stats.sent >= count:
                break
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        try:
            producer.flush(settings.kafka.timeout_s)
        except KafkaUnavailableError as exc:
            stats.first_error = stats.first_error or producer.stats.last_error or str(exc)
        with lock:
            stats.failed += len(producer)  # never acknowledged
        stats.elapsed_s = time.monotonic() - began
    if stats.failed:
        log.warning("%s", stats.summary())
    else:
        log.info("%s", stats.summary())
    return stats


def open_log(path: str | None) -> IO[str] | None:
    return None if path is None else Path(path).open("a", encoding="utf-8")
