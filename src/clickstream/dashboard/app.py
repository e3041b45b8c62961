"""The dashboard's ASGI app: ``create_app(settings)`` (Starlette, served by uvicorn).

Routes:

* ``GET /``: the page; ``GET /static/...``: its script, styles and the vendored uPlot.
* ``WebSocket /ws``: first the history, ``{"type": "history", "part": i, "parts": n,
  "server_time": ms, "history_s": n, "status": {...}, "rows": [...]}`` in ``parts`` messages,
  then ``{"type": "update", "server_time": ms, "rows": [...]}`` as results arrive, and
  ``{"type": "status", "kafka": ..., "topic": ..., "topic_ready": ..., "error": ...}`` when
  the link to Kafka changes. Rows are
  :class:`~clickstream.events.results.WindowCount` objects.
* ``GET /api/history``: ``{"rows": [...], "server_time": ms, "history_s": n}``.
* ``GET /api/status``: ``{"connections": n, "last_result_ms": ms | null, "metrics":
  {metric: newest window_end}, ...}``.
* ``GET /healthz``: 200 while Kafka answers, else 503 with the reason.
* ``GET /metrics``: Prometheus: the dashboard's own counters, and
  ``clickstream_freshness_seconds{panel}`` (how old each panel's newest data is).

No message is larger than ``max_message_bytes`` (256 KiB) unless one row is. With
``dashboard.token`` set, everything but ``/healthz`` and ``/static/`` needs the token, and
``/ws`` checks the page's Origin in any case (:mod:`clickstream.dashboard.access`).

The app owns a :class:`~clickstream.dashboard.hub.Hub` (``app.state.hub``), started and
stopped by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from clickstream.dashboard.access import Access, AccessGate
from clickstream.dashboard.hub import MAX_MESSAGE_BYTES, Hub, Subscriber, now_ms
from clickstream.dashboard.metrics import DashboardMetrics
from clickstream.errors import ConfigError
from clickstream.settings import Settings

# The page loads nothing from elsewhere; counts are keyed by user-supplied strings (page
# paths, referrers), which the script only ever writes as text.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ENCODER = msgspec.json.Encoder()


def create_app(
    settings: Settings,
    *,
    client_queue: int = 256,
    coalesce_s: float = 0.1,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> Starlette:
    """The dashboard app; its hub reads ``settings.topics.results`` once the app starts."""
    metrics = DashboardMetrics(CollectorRegistry())
    hub = Hub(
        settings,
        metrics,
        client_queue=client_queue,
        coalesce_s=coalesce_s,
        max_message_bytes=max_message_bytes,
    )
    token = settings.dashboard.token
    access = Access(token.get_secret_value() if token else None, settings.dashboard.allowed_origins)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.close()

    async def index(request: Request) -> Response:
        return Response(_index_html(), media_type="text/html", headers=_PAGE_HEADERS)

    async def history(request: Request) -> Response:
        body = {
            "rows": hub.windows.rows(),
            "server_time": now_ms(),
            "history_s": settings.dashboard.history_s,
            "stale_after_s": settings.dashboard.stale_after_s,
        }
        return _json(body)

    async def status(request: Request) -> Response:
        return _json(hub.status())

    async def healthz(request: Request) -> Response:
        ok, body = hub.health()
        return _json(body, 200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def websocket(ws: WebSocket) -> None:  # its Origin and token: AccessGate
        await ws.accept()
        subscriber, history = hub.subscribe()
        try:
            for message in history:
                await ws.send_text(message)
            await _serve(ws, subscriber)
        except WebSocketDisconnect:
            pass
        finally:
            hub.unsubscribe(subscriber)

    routes = [
        Route("/", index),
        Route("/api/history", history),
        Route("/api/status", status),
        Route("/healthz", healthz),
        Route("/metrics", prometheus),
        WebSocketRoute("/ws", websocket),
        Mount("/static", StaticFiles(packages=[("clickstream.dashboard", "static")])),
    ]
    gate = Middleware(AccessGate, access=access)
    app = Starlette(routes=routes, middleware=[gate], lifespan=lifespan)
    app.state.hub = hub
    app.state.metrics = metrics
    return app


async def _serve(ws: WebSocket, subscriber: Subscriber) -> None:
    """Send queued messages until the browser leaves, the hub drops it, or the hub stops."""

    async def send() -> None:
        while (message := await subscriber.next()) is not None:
            await ws.send_text(message)

    async def receive() -> None:
        while True:  # browsers send nothing we need; this notices when they leave
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return

    sender = asyncio.create_task(send())
    receiver = asyncio.create_task(receive())
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
            ):
                await task
    if receiver.done() and not receiver.cancelled():
        return  # the browser left
    code, reason = (1013, "too slow: reconnect") if subscriber.dropped else (1001, "going away")
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.close(code=code, reason=reason)


def _json(body: object, status_code: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status_code, media_type="application/json")


def _index_html() -> bytes:
    return resources.files("clickstream.dashboard").joinpath("static", "index.html").read_bytes()


def listen(host: str, port: int) -> socket.socket:
    """Bind before serving: a clear error for a busy port, and the real port when 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use: pass --port or set CLICKSTREAM_DASHBOARD_PORT"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
