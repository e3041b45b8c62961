"""Replay a shopping log (the seed's ``user_log.csv``) into Kafka, at a rate.

:func:`replay_shop` sends rows as :class:`~clickstream.events.shop.ShopEvent` JSON, keyed by
``user_id``: the rows of a file (:func:`read_shop_csv`, from :mod:`clickstream.simulators.shop_log`)
or made-up ones (:func:`generate_shop_rows`, from :mod:`clickstream.simulators.shop_data`), both
re-exported here. It sends ``rate`` events per second, paced in ~10 ms chunks against a monotonic
schedule (so it holds thousands of events per second), and stamps each event with the time of
sending or, given ``start``, with ``start + k * 1000 / rate`` ms for the k-th event sent (then sent
as fast as possible: the times are simulated, and a replay is deterministic). Malformed rows do not
take a slot. :class:`ReplayProgress` shows the progress on stderr.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING

import msgspec

from clickstream.errors import ConfigError, KafkaUnavailableError, TerminalError
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import EventProducer, make_producer
from clickstream.settings import Settings
from clickstream.simulators.shop_data import generate_shop_rows
from clickstream.simulators.shop_log import (
    Numbered,
    RowError,
    ShopCsv,
    ShopLogError,
    ShopRow,
    count_rows,
    read_shop_csv,
    write_shop_csv,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = [
    "MalformedRowError",
    "ReplayProgress",
    "RowError",
    "ShopCsv",
    "ShopLogError",
    "ShopRow",
    "ShopStats",
    "count_rows",
    "generate_shop_rows",
    "parse_start",
    "read_shop_csv",
    "replay_shop",
    "write_shop_csv",
]

DEFAULT_RATE = 10.0
"""Events per second by default: one row every 0.1 s, as the seed's replay sends them."""
CHUNK_S = 0.01
"""Pacing granularity: rows are sent in bursts of about 10 ms worth, then the sender sleeps."""
UNPACED_CHUNK = 1000
"""Rows between two checks (delivery reports, stop, progress) when not paced."""
LOG_EVERY_S = 10.0
SHOWN_SKIPS = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = 32_503_680_000_000  # the contract's bound on timestamps (year 3000)
_encode = msgspec.json.Encoder().encode


@dataclass
class ShopStats:
    """What a replay did: rows sent, what Kafka acknowledged, malformed rows skipped."""

    topic: str
    sent: int = 0
    """Events handed to the producer."""
    delivered: int = 0
    failed: int = 0
    """Events Kafka refused or did not acknowledge in time (see ``first_error``)."""
    skipped: int = 0
    """Malformed rows left out (see :class:`RowError`)."""
    elapsed_s: float = 0.0
    """From the first row to the end of the flush (topic creation not included)."""
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    interrupted: bool = False
    """Stopped early by ``stop`` or Ctrl-C (what was sent was still flushed)."""
    first_error: str | None = None

    def summary(self) -> str:
        return (
            f"sent {self.sent} events to {self.topic} ({self.skipped} skipped malformed rows, "
            f"{self.failed} failed)"
        )


class MalformedRowError(TerminalError):
    """A strict replay met a malformed row; the rows before it were sent and flushed."""

    def __init__(self, error: RowError, stats: ShopStats) -> None:
        done = f"the {stats.sent} rows before it were sent to {stats.topic}"
        if stats.failed:
            done += f", {stats.failed} of them not delivered ({stats.first_error})"
        else:
            done += " and acknowledged"
        super().__init__(f"{error}; stopped there (strict): {done}")
        self.error, self.stats = error, stats


# -- sending -------------------------------------------------------------------------------------


def parse_start(text: str) -> int:
    """An ISO 8601 time (``2026-01-01T00:00:00Z``; UTC when it has no zone) as epoch ms."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"start must be an ISO 8601 time such as 2026-01-01T00:00:00Z, got {text!r}"
        ) from None
    return _epoch_ms(moment)


def _epoch_ms(moment: datetime | int) -> int:
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        moment = (aware - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= moment <= _MAX_MS:
        raise ConfigError(f"start must be between 1970 and 3000, got {moment} ms")
    return moment


def replay_shop(
    settings: Settings,
    rows: Iterable[ShopRow | Numbered],
    *,
    topic: str | None = None,
    rate: float = DEFAULT_RATE,
    start: datetime | int | None = None,
    strict: bool = False,
    count: int | None = None,
    duration_s: float | None = None,
    progress: Callable[[ShopStats], None] | None = None,
    on_skip: Callable[[RowError], None] | None = None,
    stop: threading.Event | None = None,
    create_topic: bool = True,
    seed_format: bool = False,
) -> ShopStats:
    """Send ``rows`` (:class:`ShopRow`, or ``(line, row)`` from :func:`read_shop_csv`) to
    ``topic`` (default ``settings.topics.shop``, created if missing) as :class:`ShopEvent` JSON
    keyed by ``user_id``; flush, and return the stats. With ``seed_format``, each row is sent as
    seed 001's producer sent it: the gender alone (``0``, ``1``, ``2``; empty when the row has
    none), without a key, by default to ``settings.topics.shop_genders``.

    ``rate`` events/s (0: as fast as possible). Event time: the wall clock at sending, or from
    ``start`` (a datetime, UTC if naive, or epoch ms; needs ``rate > 0``) the k-th event sent
    gets ``start + k * 1000 / rate`` ms and events go out as fast as possible. Stops at the end
    of ``rows``, after ``count`` events, after ``duration_s`` seconds, or once ``stop`` is set
    (or on Ctrl-C): either way what was queued is flushed. A malformed row is skipped, counted
    and passed to ``on_skip``; with ``strict`` the replay stops there and raises
    :class:`MalformedRowError` (after the flush). Events Kafka did not acknowledge are counted in
    ``failed`` (``first_error`` says why), not raised. ``progress`` gets the stats every chunk.
    """
    _check(math.isfinite(rate) and rate >= 0, "rate must be >= 0 events per second", rate)
    _check(count is None or count >= 1, "count must be >= 1 event", count)
    _check(duration_s is None or duration_s > 0, "duration_s must be > 0 seconds", duration_s)
    start_ms = None if start is None else _epoch_ms(start)
    if start_ms is not None and rate == 0:
        raise ConfigError("start needs rate > 0: event times are spaced 1000/rate ms apart")
    name = topic or (settings.topics.shop_genders if seed_format else settings.topics.shop)
    if create_topic:
        ensure_topics(settings, [name])
    producer = make_producer(settings)
    stats = ShopStats(topic=name)
    error = None
    began = time.monotonic()
    try:
        error = _send(producer, rows, stats, rate, start_ms, strict, count, duration_s, progress,
                      on_skip, stop, seed_format)  # fmt: skip
    except KeyboardInterrupt:
        stats.interrupted = True
    except BaseException:
        _flush(producer, stats, timeout=settings.kafka.timeout_s)  # what was queued goes out
        raise
    _flush(producer, stats)
    stats.elapsed_s = time.monotonic() - began
    if progress is not None:
        progress(stats)
    if error is not None:
        raise MalformedRowError(error, stats)
    return stats


def _send(
    producer: EventProducer,
    rows: Iterable[ShopRow | Numbered],
    stats: ShopStats,
    rate: float,
    start_ms: int | None,
    strict: bool,
    count: int | None,
    duration_s: float | None,
    progress: Callable[[ShopStats], None] | None,
    on_skip: Callable[[RowError], None] | None,
    stop: threading.Event | None,
    seed_format: bool = False,
) -> RowError | None:
    """The sending loop; returns the malformed row a strict replay stopped at."""
    paced = rate > 0 and start_ms is None
    chunk = max(1, int(rate * CHUNK_S)) if paced else UNPACED_CHUNK
    step_ms = 1000.0 / rate if rate else 0.0
    clock, wait = time.monotonic, stop.wait if stop is not None else time.sleep
    origin = clock()
    deadline = origin + duration_s if duration_s is not None else math.inf
    topic, seen = stats.topic, 0
    for item in rows:
        if seen % chunk == 0:  # between chunks: reports, progress, stop, pacing
            producer.poll(0)
            stats.delivered, stats.failed = producer.stats.delivered, producer.stats.failed
            if progress is not None:
                progress(stats)
            now = clock()
            due = origin + stats.sent / rate if paced else now
            if paced and due < now - 1.0:  # fell behind by over a second: no catch-up burst
                origin, due = now - 1.0 - stats.sent / rate, now - 1.0
            stopped = stop is not None and stop.is_set()
            if stopped or due >= deadline:
                stats.interrupted = stopped
                return None
            if due > now:
                wait(due - now)
                if stop is not None and stop.is_set():
                    stats.interrupted = True
                    return None
        seen += 1
        row = item if isinstance(item, ShopRow) else item[1]
        if isinstance(row, RowError):
            if strict:
                return row
            stats.skipped += 1
            if on_skip is not None:
                on_skip(row)
            continue
        if start_ms is None:
            timestamp = int(time.time() * 1000)
        else:
            timestamp = start_ms + round(stats.sent * step_ms)
        if seed_format:
            producer.produce(topic, b"" if row.gender is None else str(row.gender).encode())
        else:
            producer.produce(topic, _encode(row.event(timestamp)), str(row.user_id).encode())
        if stats.first_timestamp is None:
            stats.first_timestamp = timestamp
        stats.last_timestamp = timestamp
        stats.sent += 1
        if count is not None and stats.sent >= count:
            break
    return None


def _flush(producer: EventProducer, stats: ShopStats, timeout: float | None = None) -> None:
    """Wait for what is queued; count what Kafka did not acknowledge instead of raising."""
    try:
        producer.flush(timeout)
    except KafkaUnavailableError as exc:
        stats.first_error = producer.stats.last_error or str(exc)
    stats.delivered = producer.stats.delivered
    stats.failed = producer.stats.failed + len(producer)


def _check(ok: bool, message: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{message}, got {value!r}")


# -- progress ------------------------------------------------------------------------------------


class ReplayProgress:
    """A replay's progress on stderr: a live bar on a terminal, else a line every ``every_s``
    (a log file). Pass it as ``progress`` and its :meth:`skipped` as ``on_skip``: the first
    ``shown_skips`` malformed rows are printed, the rest only counted."""

    def __init__(
        self,
        topic: str,
        total: int | None = None,
        *,
        live: bool | None = None,
        every_s: float = LOG_EVERY_S,
        shown_skips: int = SHOWN_SKIPS,
    ) -> None:
        self.topic, self.total = topic, total
        self.live = sys.stderr.isatty() if live is None else live
        self.every_s, self.shown_skips = every_s, shown_skips
        self.skips = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._began = self._next_log = 0.0

    def __enter__(self) -> ReplayProgress:
        self._began = time.monotonic()
        self._next_log = self._began + self.every_s
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            columns = (TextColumn(f"[bold]{self.topic}"), BarColumn(), MofNCompleteColumn())
            self._bar = Progress(
                *columns,
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task("rows", total=self.total, info="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, stats: ShopStats) -> None:
        now = time.monotonic()
        rate = stats.sent / (now - self._began) if now > self._began else 0.0
        if self._bar is not None and self._task is not None:
            info = f"{rate:,.0f}/s" + (f", {stats.skipped} skipped" if stats.skipped else "")
            done = stats.sent + stats.skipped
            self._bar.update(self._task, completed=min(done, self.total or done), info=info)
        elif not self.live and now >= self._next_log:
            self._next_log = now + self.every_s
            self._say(
                f"{self.topic}: {stats.sent} events sent ({rate:,.1f}/s), {stats.delivered} "
                f"delivered, {stats.failed} failed, {stats.skipped} malformed rows skipped"
            )

    def skipped(self, error: RowError) -> None:
        self.skips += 1
        if self.skips <= self.shown_skips:
            self._say(f"{error}; skipped", warning=True)
        if self.skips == self.shown_skips + 1:
            self._say("more malformed rows: skipped and counted, not shown", warning=True)

    def _say(self, message: str, warning: bool = False) -> None:
        if self._bar is not None:
            self._bar.console.print(message, style="yellow" if warning else None, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)
