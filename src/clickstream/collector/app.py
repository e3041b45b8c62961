"""The collector's ASGI app: ``create_app(settings)``.

Endpoints: ``POST /api/webeventspub`` (the seed snippet's payload, one event), ``POST
/v1/events`` (a batch: JSON array or newline-delimited JSON), ``GET /clickstream.js`` (the
tracker), ``GET /healthz``, ``GET /metrics`` (Prometheus) and the OpenAPI document at
``/openapi.json`` (``/docs`` to browse it). A 2xx answer means Kafka acknowledged every accepted
event; when it cannot, the answer is 503 with ``Retry-After``.

The two POST endpoints are served straight from ASGI (:class:`IngestRoutes`): FastAPI's
request machinery cost more than the rest of the work per event. FastAPI serves the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from clickstream import __version__
from clickstream.collector.core import Collector, Incoming
from clickstream.collector.cors import AllowlistCORS
from clickstream.collector.problems import Problem
from clickstream.collector.producer import AsyncProducer
from clickstream.events.web import WebEvent
from clickstream.settings import Settings

_JSON = [(b"content-type", b"application/json")]
Handler = Callable[[Incoming, bytes], Awaitable[bytes]]


class IngestRoutes:
    """Serves the POST endpoints from raw ASGI; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, collector: Collector) -> None:
        self.app = app
        self.collector = collector
        self.limit = collector.config.max_body_bytes
        self.routes: dict[str, Handler] = {
            "/api/webeventspub": collector.one,
            "/v1/events": collector.batch,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string") or b""
        client = scope.get("client")
        incoming = Incoming(
            headers=headers,
            query=dict(parse_qsl(query.decode("latin-1"))) if query else {},
            peer=client[0] if client else None,
        )
        try:
            body = await self._body(headers, receive)
            status, payload, extra = 200, await handler(incoming, body), []
        except Problem as problem:
            status, payload = problem.status, problem.body()
            extra = [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": _JSON + extra})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise Problem(413, f"body of {declared} bytes is over the limit of {self.limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise Problem(413, f"body is over the limit of {self.limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def create_app(settings: Settings, producer: AsyncProducer | None = None) -> ASGIApp:
    collector = Collector(settings, producer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await collector.producer.start()
        try:
            yield
        finally:
            await collector.producer.close()

    app = FastAPI(
        title="clickstream collector",
        version=__version__,
        description="Receives web analytics events and produces them to Kafka.",
        lifespan=lifespan,
    )
    app.state.collector = collector

    @app.get("/clickstream.js", summary="The browser tracker", response_class=Response)
    async def tracker() -> Response:
        return Response(
            _tracker_source(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @app.get("/healthz", summary="Liveness and Kafka reachability")
    async def healthz() -> Response:
        up = collector.producer.kafka_up
        body = {"status": "ok" if up else "degraded", "kafka": "up" if up else "down"}
        if not up:
            body["error"] = collector.producer.last_error or ""
        return Response(
            msgspec.json.encode(body),
            status_code=200 if up else 503,
            media_type="application/json",
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)

    _add_openapi(app)
    return AllowlistCORS(IngestRoutes(app, collector), collector.config.allowed_origins)


def app_from_env() -> ASGIApp:
    """For ``uvicorn --factory`` with several worker processes: settings from the environment."""
    from clickstream.settings import load_settings

    return create_app(load_settings())


def _tracker_source() -> bytes:
    return (
        resources.files("clickstream.collector").joinpath("static", "clickstream.js").read_bytes()
    )


_ERRORS = {
    "400": {"description": "The body is not JSON, or is empty"},
    "401": {"description": "Missing or unknown write key"},
    "403": {"description": "The page's origin is not allowed"},
    "413": {"description": "Body or batch over the limit"},
    "422": {"description": "An event does not match its schema; the field is named"},
    "503": {"description": "Kafka did not acknowledge; retry after Retry-After seconds"},
}


def _post(summary: str, schema: str, answer: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    content = {"application/json": {"schema": ref}, "text/plain": {"schema": ref}}
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": content},
            "responses": {"200": {"description": answer}, **_ERRORS},
        }
    }


def _add_openapi(app: FastAPI) -> None:
    """The OpenAPI document: FastAPI's GET routes plus the two ASGI POST endpoints, with the
    msgspec event schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema["paths"]["/api/webeventspub"] = _post(
            "One event, exactly as the original tracker snippet sends it",
            "WebEvent",
            'Kafka has it: {"accepted": 1, "id": eventId}',
        )
        schema["paths"]["/v1/events"] = _post(
            "A batch of events: a JSON array or newline-delimited JSON",
            "WebEventBatch",
            'Kafka has the good ones: {"accepted": n, "rejected": [{index, error, field}]}',
        )
        (one, batch), components = msgspec.json.schema_components(
            [WebEvent, list[WebEvent]], ref_template="#/components/schemas/{name}"
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(components)
        schemas["WebEvent"] = one
        schemas["WebEventBatch"] = batch
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
