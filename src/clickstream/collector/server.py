"""Running the collector on an ASGI server, with deadlines for slow senders.

uvicorn closes a connection only when it is idle after a response: one that sends its headers or
its body a byte at a time is held for ever, and a few hundred of them hold the server. Here
:class:`DeadlineHttpTools` (uvicorn's httptools protocol) closes a connection whose request's
headers have not all arrived ``collector.header_timeout_s`` after the connection opened or the
request began, and one whose body has not all arrived ``collector.body_timeout_s`` (plus a
second) after its headers (the deadlines of all connections are checked by one timer, every
:data:`SWEEP_S`); the collector's POST endpoints answer 408 at ``body_timeout_s``
itself (:mod:`clickstream.collector.ingest`). granian has a header deadline of its own
(``header_read_timeout``), set from the same setting.

:func:`serve` is what ``clickstream collector`` runs. Worker processes (uvicorn's with several
workers, granian's always) build the app from the settings they are handed (pickled with the
app's factory), so the Kafka address found by the parent (the embedded broker's) reaches them
without going through the environment.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import partial
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from clickstream.collector.app import create_app
from clickstream.errors import ConfigError
from clickstream.settings import Settings

BODY_GRACE_S = 1.0
"""The connection outlives ``body_timeout_s`` by this much, so the endpoint's 408 goes out."""
SWEEP_S = 0.25
"""How often the connections' deadlines are checked: a slow connection is closed at most this
much after its deadline."""
_TIMEOUT_TEXT = b"request not received in time\n"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)


class DeadlineConfig(uvicorn.Config):
    """uvicorn's configuration, with the collector's deadlines (it goes to worker processes
    whole, so they travel with it)."""

    def __init__(
        self, app: Any, *, header_timeout_s: float, body_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(app, http=DeadlineHttpTools, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s


class _Sweeper:
    """Checks the deadlines of one event loop's connections every :data:`SWEEP_S`: one timer
    for them all, so a request only writes down its deadline (two timers armed and cancelled
    per request cost about 5% of a worker's CPU on single events)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watched: set[DeadlineHttpTools] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, protocol: DeadlineHttpTools) -> None:
        self.watched.add(protocol)
        if self._timer is None:
            self._timer = self.loop.call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        for protocol in [p for p in self.watched if p.due is not None and p.due <= now]:
            protocol.too_slow()
        if self.watched:
            self._timer = self.loop.call_later(SWEEP_S, self._sweep)


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = (
    weakref.WeakKeyDictionary()
)


class DeadlineHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request arrives too slowly."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = float(getattr(config, "header_timeout_s", 10.0))
        self.body_timeout_s = float(getattr(config, "body_timeout_s", 30.0)) + BODY_GRACE_S
        self.due: float | None = None
        """When the part of the request awaited (``waiting_headers``) must have arrived."""
        self.waiting_headers = True
        sweeper = _SWEEPERS.get(self.loop)
        if sweeper is None:
            sweeper = _SWEEPERS[self.loop] = _Sweeper(self.loop)
        self._sweeper = sweeper

    def _arm(self, seconds: float, headers: bool) -> None:
        self.due = self.loop.time() + seconds
        self.waiting_headers = headers

    def too_slow(self) -> None:
        """Close the connection; a request whose headers did not all arrive is told why (one
        whose body did not has been answered by the app, or is being answered)."""
        self.due = None
        if self.transport.is_closing():
            return
        if self.waiting_headers and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, headers=True)
        self._sweeper.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.due = None
        self._sweeper.watched.discard(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.due is None:
            self._arm(self.header_timeout_s, headers=True)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s, headers=False)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.due = None
        super().on_message_complete()


def uvicorn_config(settings: Settings, app: Any, host: str, port: int, **kwargs: Any) -> Any:
    """uvicorn's configuration for the collector (``app``: an ASGI app or an import string)."""
    section = settings.collector
    return DeadlineConfig(
        app,
        host=host,
        port=port,
        header_timeout_s=section.header_timeout_s,
        body_timeout_s=section.body_timeout_s,
        log_level="warning",
        access_log=False,
        # The collector reads X-Forwarded-For itself, trusting collector.trusted_proxies only.
        proxy_headers=False,
        **kwargs,
    )


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    workers: int = 1,
    server: Literal["uvicorn", "granian"] = "uvicorn",
) -> None:
    """Serve the collector on ``server`` until interrupted."""
    if server == "granian":
        serve_granian(settings, host, port, workers)
    else:
        serve_uvicorn(settings, host, port, workers)


def serve_uvicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    """The collector on uvicorn: in this process, or in ``workers`` > 1 worker processes."""
    if workers == 1:
        uvicorn.Server(uvicorn_config(settings, create_app(settings), host, port)).run()
        return
    from uvicorn.supervisors import Multiprocess

    factory = partial(create_app, settings)
    config = uvicorn_config(settings, factory, host, port, workers=workers, factory=True)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def serve_granian(settings: Settings, host: str, port: int, workers: int) -> None:
    """The collector on granian (a Rust HTTP server), always in worker processes."""
    try:
        from granian import Granian
        from granian.constants import Interfaces
    except ImportError:
        raise ConfigError(
            "collector.server = 'granian' needs granian: pip install 'clickstream[granian]'"
        ) from None
    server = Granian(
        "clickstream.collector.app:create_app",  # named in granian's log; the loader builds it
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_access=False,
        **granian_options(settings),
    )
    server.serve(target_loader=partial(create_app, settings), wrap_loader=False)


def granian_options(settings: Settings) -> dict[str, Any]:
    """Options of ``granian.Granian`` for the collector's deadlines."""
    from granian.http import HTTP1Settings

    timeout_ms = int(settings.collector.header_timeout_s * 1000)
    return {"http1_settings": HTTP1Settings(header_read_timeout=timeout_ms)}
