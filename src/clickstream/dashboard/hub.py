"""The hub: recent window counts from the results topic, fanned out to browsers.

A :class:`~clickstream.dashboard.reader.ResultsReader` thread consumes the topic and hands
batches to the asyncio loop (``call_soon_threadsafe``). On the loop, a batch is merged into
:class:`~clickstream.dashboard.windows.RecentWindows`, and what changed is encoded once and
queued to every subscriber. All state lives on the loop, so a subscriber's history and the
updates after it never overlap or leave a gap.

No message is larger than ``max_message_bytes`` (256 KiB): the history, and an update with
many rows, go out in several messages (common WebSocket clients refuse messages over 1 MiB;
at 500 events/s a whole history was 1.49 MB). The pieces of one history say ``part`` and
``parts``; the page draws once the last one arrived.

Slow browsers do not hold up the others: each subscriber has a bounded queue; when it is full
the subscriber is dropped (its WebSocket closed with 1013). The page reconnects and receives
the history again, so it never shows counts with updates missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from clickstream.dashboard.metrics import DashboardMetrics
from clickstream.dashboard.reader import ResultsReader, now_ms
from clickstream.dashboard.windows import RecentWindows
from clickstream.events.results import WindowCount
from clickstream.settings import Settings

LOGGER = logging.getLogger("clickstream.dashboard")

_ENCODER = msgspec.json.Encoder()

MAX_MESSAGE_BYTES = 256 * 1024
"""The largest message the hub sends, unless one row alone is larger."""

__all__ = ["MAX_MESSAGE_BYTES", "Hub", "Subscriber", "now_ms", "split_message", "split_rows"]


class Subscriber:
    """One browser: a bounded queue of encoded messages; ``None`` ends the subscription."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.dropped = False

    def offer(self, message: str) -> bool:
        """Queue ``message``; on a full queue mark the subscriber dropped and end it."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped = True
            self.end()
            return False
        return True

    def end(self) -> None:
        """Discard what is queued and wake the sender with ``None``."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def next(self) -> str | None:
        return await self.queue.get()


class Hub:
    """Recent window counts from Kafka, pushed to subscribers on one asyncio loop.

    ``await start()`` on the loop that serves the subscribers; ``await close()`` stops the
    reader thread and ends every subscription. Every other method must be called on that loop.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: DashboardMetrics | None = None,
        *,
        client_queue: int = 256,
        coalesce_s: float = 0.1,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.settings = settings
        self.max_message_bytes = max_message_bytes
        self.history_ms = settings.dashboard.history_s * 1000
        self.windows = RecentWindows(self.history_ms)
        self.metrics = metrics or DashboardMetrics(CollectorRegistry())
        self.client_queue = client_queue
        self.subscribers: set[Subscriber] = set()
        self.reader = ResultsReader(
            settings,
            self.metrics,
            deliver=lambda rows: self._call(self.deliver, rows),
            on_state=lambda: self._call(self._push_status),
            coalesce_s=coalesce_s,
        )
        self.metrics.connections.set_function(lambda: len(self.subscribers))
        self.metrics.kafka_up.set_function(lambda: 1 if self.reader.kafka == "up" else 0)
        self.metrics.watch_freshness(self.windows.freshness, settings.dashboard.stale_after_s)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.reader.start()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop reading, close the consumer and end every subscription."""
        await asyncio.to_thread(self.reader.stop, timeout)
        for subscriber in list(self.subscribers):
            subscriber.end()
        self.subscribers.clear()

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop (from the reader thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback, *args)

    # -- subscribers -----------------------------------------------------------------------------

    def subscribe(self) -> tuple[Subscriber, list[str]]:
        """A new subscriber and the history messages to send it first, in order.

        Both are taken in one step on the loop, so every later change reaches the subscriber.
        """
        subscriber = Subscriber(self.client_queue)
        self.subscribers.add(subscriber)
        history = self.history_messages()
        self.metrics.pushed.inc(len(history))
        return subscriber, history

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def deliver(self, rows: list[WindowCount]) -> None:
        """Merge ``rows`` and push what changed to every subscriber."""
        changed = self.windows.apply(rows)
        if changed and self.subscribers:
            envelope = {"type": "update", "server_time": now_ms()}
            for message in split_message(envelope, changed, self.max_message_bytes):
                self._fan_out(message)

    def _push_status(self) -> None:
        if self.subscribers:
            message = {"type": "status", **self.connection_status()}
            self._fan_out(_ENCODER.encode(message).decode())

    def _fan_out(self, message: str) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.offer(message):
                self.metrics.pushed.inc()
            elif subscriber.dropped:
                self.subscribers.discard(subscriber)
                self.metrics.dropped_clients.inc()
                LOGGER.warning("dropped a browser that did not keep up (it will reconnect)")

    # -- what the app serves ---------------------------------------------------------------------

    def history_messages(self) -> list[str]:
        """Every row held, in pieces of at most ``max_message_bytes`` numbered ``part`` 1 to
        ``parts``; each piece also carries the server time, ``history_s`` and the status."""
        envelope: dict[str, Any] = {
            "type": "history",
            "part": 0,
            "parts": 0,
            "server_time": now_ms(),
            "history_s": self.history_ms // 1000,
            "stale_after_s": self.settings.dashboard.stale_after_s,
            "status": self.connection_status(),
        }
        widest = {**envelope, "part": 2**31, "parts": 2**31}  # room for the numbers
        pieces = split_rows(self.windows.rows(), widest, self.max_message_bytes)
        return [
            encode_message({**envelope, "part": part, "parts": len(pieces)}, piece)
            for part, piece in enumerate(pieces, 1)
        ]

    def connection_status(self) -> dict[str, Any]:
        """The link to Kafka, as browsers are told."""
        reader = self.reader
        return {
            "kafka": reader.kafka,
            "topic": reader.topic,
            "topic_ready": reader.topic_ready,
            "error": reader.last_error if reader.kafka != "up" else None,
        }

    def status(self) -> dict[str, Any]:
        return {
            "connections": len(self.subscribers),
            "last_result_ms": self.reader.last_result_ms,
            "metrics": self.windows.newest_end(),
            "results_received": self.reader.received,
            "bad_records": self.reader.bad_records,
            **self.connection_status(),
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): healthy while the reader runs and Kafka answers."""
        reader = self.reader
        ok = reader.running and reader.kafka == "up"
        body: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "kafka": reader.kafka,
            "topic": "ready" if reader.topic_ready else "waiting",
        }
        if not ok:
            if not reader.running:
                body["error"] = "the results reader is not running"
            else:
                body["error"] = reader.last_error or "connecting to Kafka"
        return ok, body


def split_rows(
    rows: Sequence[WindowCount], envelope: dict[str, Any], max_bytes: int
) -> list[list[bytes]]:
    """``rows`` encoded, in order, in groups that fit ``envelope`` within ``max_bytes`` UTF-8
    bytes once :func:`encode_message` adds them; a row too large for that goes alone. Always
    at least one group (empty when there are no rows)."""
    budget = max_bytes - len(encode_message(envelope, []))
    groups: list[list[bytes]] = [[]]
    size = 0
    for encoded in map(_ENCODER.encode, rows):
        group = groups[-1]
        if group and size + 1 + len(encoded) > budget:
            groups.append(group := [])
            size = 0
        size += len(encoded) + (1 if group else 0)
        group.append(encoded)
    return groups


def encode_message(envelope: dict[str, Any], rows: list[bytes]) -> str:
    """``envelope`` with ``"rows"``, already encoded rows, added as its last key."""
    head = _ENCODER.encode(envelope)[:-1]
    separator = b"," if len(head) > 1 else b""
    return (head + separator + b'"rows":[' + b",".join(rows) + b"]}").decode()


def split_message(
    envelope: dict[str, Any], rows: Sequence[WindowCount], max_bytes: int
) -> list[str]:
    """``envelope`` with ``"rows"``, as messages of at most ``max_bytes`` each (see
    :func:`split_rows`)."""
    return [encode_message(envelope, group) for group in split_rows(rows, envelope, max_bytes)]
