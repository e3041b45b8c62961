"""How a foreground command hears a stop.

A command that runs until told (``broker``, ``jobs run``, ``up``) takes SIGINT and SIGTERM with
:func:`stop_signals`: while it runs, a stop sets an event that its loop watches. Its start is
made of calls that block for seconds to minutes and watch no event (the jar download, the
broker's start, Spark's start): inside :meth:`StopEvent.raising` a stop raises
:class:`Stopped` in the main thread instead, wherever it waits, and each stage ends what it
started on the way out (it kills the jar fetcher, stops the broker, kills Spark's JVM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Stopped(BaseException):
    """A SIGINT or SIGTERM came while a command was starting: it stops instead.

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` on the way (a
    retry loop, say) takes it for an error and goes on.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopEvent(threading.Event):
    """Set by SIGINT or SIGTERM; inside :meth:`raising`, the signal also raises :class:`Stopped`."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None
        self._armed = False

    def on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        self.signum = signum
        self.set()
        if self._armed:
            self._armed = False  # once: a second Ctrl-C must not break the way out
            raise Stopped(signum)

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Within: a stop raises :class:`Stopped` in the main thread (at once if it came
        before)."""
        if self.is_set():
            raise Stopped(self.signum or signal.SIGTERM)
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


@contextmanager
def stop_signals() -> Iterator[StopEvent]:
    """An event set by SIGINT or SIGTERM, for a foreground command that runs until told."""
    stop = StopEvent()
    previous = {sig: signal.signal(sig, stop.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
