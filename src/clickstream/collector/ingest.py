"""The two POST endpoints, served straight from ASGI: FastAPI's request machinery cost more than
the rest of the work per event. Everything else goes on to the FastAPI app.

What is refused here, before the body is parsed: other methods (405 with ``Allow``), content
types that are not JSON or text (415), bodies over ``max_body_bytes`` (413), and bodies that do
not arrive within ``body_timeout_s`` of the headers (408, and the connection is closed). A
client that goes away before its body is complete gets no answer, and nothing it sent is
produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickstream.collector.core import Collector, Incoming
from clickstream.collector.problems import Problem

Handler = Callable[[Incoming, bytes], Awaitable[bytes]]
ALLOW = "OPTIONS, POST"
MEDIA_TYPES = frozenset(
    {
        "application/json",
        "text/plain",  # what sendBeacon and the tracker send (no CORS preflight)
        "application/x-ndjson",
        "application/jsonl",
        "application/jsonlines",
    }
)
"""Content types a POST may have (or none); ``application/<anything>+json`` too."""
_JSON = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


class IngestRoutes:
    """Serves the POST endpoints from raw ASGI; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, collector: Collector) -> None:
        self.app = app
        self.collector = collector
        self.limit = collector.config.max_body_bytes
        self.body_timeout_s = collector.config.body_timeout_s
        self.routes: dict[str, Handler] = {
            "/api/webeventspub": collector.one,
            "/v1/events": collector.batch,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            if scope["method"] != "POST":
                await self._other_method(scope["method"], send)
                return
            incoming = _incoming(scope)
            check_content_type(incoming.headers.get("content-type"))
            body = await self._body(incoming.headers, receive)
            status, payload, extra = 200, await handler(incoming, body), []
        except ClientGone:
            return
        except Problem as problem:
            status, payload = problem.status, problem.body()
            extra = [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": _JSON + extra})
        await send({"type": "http.response.body", "body": payload})

    async def _other_method(self, method: str, send: Send) -> None:
        if method == "OPTIONS":  # not a CORS preflight (AllowlistCORS answers those)
            headers = [(b"allow", ALLOW.encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        raise Problem(405, f"method {method} is not allowed: POST events", headers={"Allow": ALLOW})

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise Problem(
                413,
                f"body of {declared} bytes is over the limit of {self.limit} bytes",
                headers={"Connection": "close"},
            )
        try:
            async with asyncio.timeout(self.body_timeout_s):
                return await self._read(receive)
        except TimeoutError:
            raise Problem(
                408,
                f"body not received within {self.body_timeout_s:g} s",
                headers={"Connection": "close"},
            ) from None

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise Problem(
                    413,
                    f"body is over the limit of {self.limit} bytes",
                    headers={"Connection": "close"},
                )
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def check_content_type(value: str | None) -> None:
    """415 unless the body is declared JSON, NDJSON or text in UTF-8 (or not declared)."""
    if value is None:
        return
    media, *params = (part.strip().lower() for part in value.split(";"))
    if media not in MEDIA_TYPES and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise Problem(
            415,
            f"content type {media or '(empty)'} is not accepted: send application/json"
            " (or text/plain, application/x-ndjson)",
            "Content-Type",
        )
    for param in params:
        name, _, charset = param.partition("=")
        if name.strip() == "charset" and charset.strip().strip('"') not in (
            "utf-8",
            "utf8",
            "us-ascii",
        ):
            raise Problem(
                415, f"charset {charset.strip()} is not accepted: send UTF-8", "Content-Type"
            )


def _incoming(scope: Scope) -> Incoming:
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1")
        text = value.decode("latin-1")
        if name == "x-forwarded-for" and name in headers:  # several: one list, in order
            text = f"{headers[name]}, {text}"
        headers[name] = text
    query = scope.get("query_string") or b""
    client = scope.get("client")
    return Incoming(
        headers=headers,
        query=dict(parse_qsl(query.decode("latin-1"))) if query else {},
        peer=client[0] if client else None,
    )
