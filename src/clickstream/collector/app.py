"""The collector's ASGI app: ``create_app(settings)``.

Endpoints: ``POST /api/webeventspub`` (the seed snippet's payload, one event), ``POST
/v1/events`` (a batch: JSON array or newline-delimited JSON), ``GET /clickstream.js`` (the
tracker), ``GET /healthz``, ``GET /metrics`` (Prometheus; it needs ``dashboard.token`` when that
is set) and the OpenAPI document at ``/openapi.json`` (``/docs`` to browse it, served from the
package). A 2xx answer means Kafka acknowledged every accepted event; a 503 (with
``Retry-After``) means librdkafka gave up on them.

The two POST endpoints are served straight from ASGI (:mod:`clickstream.collector.ingest`);
FastAPI serves the rest.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp

from clickstream import __version__
from clickstream.collector.core import Collector
from clickstream.collector.cors import AllowlistCORS
from clickstream.collector.ingest import IngestRoutes
from clickstream.collector.openapi import add_docs, add_openapi
from clickstream.collector.producer import AsyncProducer
from clickstream.settings import Settings


def create_app(settings: Settings, producer: AsyncProducer | None = None) -> ASGIApp:
    collector = Collector(settings, producer)
    token = settings.dashboard.token

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
        docs_url=None,
        redoc_url=None,
    )
    app.state.collector = collector

    @app.get("/clickstream.js", summary="The browser tracker", response_class=Response)
    async def tracker() -> Response:
        return Response(
            _tracker_source(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @app.get(
        "/healthz",
        summary="Liveness and Kafka reachability",
        responses={503: {"description": "Kafka is not reachable"}},
    )
    async def healthz() -> Response:
        up = await collector.producer.check_kafka()
        body = {"status": "ok" if up else "degraded", "kafka": "up" if up else "down"}
        if not up:
            body["error"] = collector.producer.last_error or ""
        return Response(
            msgspec.json.encode(body),
            status_code=200 if up else 503,
            media_type="application/json",
        )

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={401: {"description": "dashboard.token is set: send it as a Bearer token"}},
    )
    async def metrics(request: Request) -> Response:
        if token is not None and not _bearer_matches(
            request.headers.get("authorization", ""), token.get_secret_value()
        ):
            return Response(
                msgspec.json.encode(
                    {"error": "send Authorization: Bearer <dashboard.token>", "field": "token"}
                ),
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="clickstream collector"'},
            )
        return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)

    add_openapi(app)
    add_docs(app)
    return AllowlistCORS(IngestRoutes(app, collector), collector.config.allowed_origins)


def _tracker_source() -> bytes:
    return (
        resources.files("clickstream.collector").joinpath("static", "clickstream.js").read_bytes()
    )


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
