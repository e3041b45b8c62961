"""The collector's ASGI app: ``create_app(settings)``.

Endpoints: ``POST /api/webeventspub`` (the seed snippet's payload, one event), ``POST
/v1/events`` (a batch: JSON array or newline-delimited JSON), ``GET /clickstream.js`` (the
tracker), ``GET /healthz``, ``GET /metrics`` (Prometheus) and the OpenAPI document at
``/openapi.json`` (``/docs`` to browse it). A 2xx answer means Kafka acknowledged every accepted
event; when it cannot, the answer is 503 with ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from clickstream import __version__
from clickstream.collector.cors import AllowlistCORS
from clickstream.collector.enrich import (
    anonymize_ip,
    client_address,
    enrich,
    event_id,
    parse_user_agent,
)
from clickstream.collector.metrics import CollectorMetrics
from clickstream.collector.problems import Problem, problem_response, validation_problem
from clickstream.collector.producer import AsyncProducer
from clickstream.errors import KafkaUnavailableError
from clickstream.events.web import EnrichedWebEvent, PagePing, Pageview, WebEvent
from clickstream.settings import Settings

RETRY_AFTER_S = 5
_decode_one = msgspec.json.Decoder(WebEvent, strict=False)
_decode_list = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.Encoder()
_ok = _encode


class Collector:
    """The collector's state: settings, producer, metrics."""

    def __init__(self, settings: Settings, producer: AsyncProducer | None = None) -> None:
        self.settings = settings
        self.config = settings.collector
        self.producer = producer or AsyncProducer(settings)
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics(self.registry)
        self.sites_by_key = {key: site for site, key in self.config.write_keys.items()}
        topics = settings.topics
        self.topics = {Pageview: topics.web_events, PagePing: topics.web_pings}
        self.custom_topic = topics.web_custom

    def site(self, request: Request) -> str | None:
        if not self.sites_by_key:
            return None
        key = request.query_params.get("key") or request.headers.get("x-clickstream-key")
        if not key:
            raise Problem(
                401, "missing write key: pass ?key=... or an X-Clickstream-Key header", "key"
            )
        site = self.sites_by_key.get(key)
        if site is None:
            raise Problem(401, "unknown write key", "key")
        return site

    async def body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Problem(413, f"body of {declared} bytes is over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            raise Problem(400, "empty body: send a JSON event")
        return body

    def record(
        self, event: WebEvent, request: Request, site: str | None
    ) -> tuple[str, bytes, bytes]:
        user_agent = request.headers.get("user-agent", "")
        peer = request.client.host if request.client else None
        address = client_address(
            peer, request.headers.get("x-forwarded-for"), self.config.trust_forwarded_for
        )
        enriched: EnrichedWebEvent = enrich(
            event,
            agent=parse_user_agent(user_agent),
            ip=anonymize_ip(address, self.config.ip_mode),
            user_agent=user_agent or None,
            site=site,
        )
        topic = self.topics.get(type(event), self.custom_topic)
        return topic, enriched.uiud.encode(), _encode.encode(enriched)

    async def produce(self, records: list[tuple[str, bytes, bytes]]) -> None:
        started = time.perf_counter()
        try:
            await self.producer.send_many(records)
        except KafkaUnavailableError as exc:
            self.metrics.unavailable.inc()
            raise Problem(
                503,
                f"events not stored, Kafka is unavailable ({exc}); retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        self.metrics.ack_seconds.observe(time.perf_counter() - started)
        for topic, _, _ in records:
            self.metrics.accepted.labels(topic).inc()


def split_batch(body: bytes) -> list[msgspec.Raw]:
    """A JSON array, or one JSON value per line (NDJSON)."""
    if body.lstrip()[:1] == b"[":
        try:
            return _decode_list.decode(body)
        except msgspec.DecodeError as exc:
            raise Problem(400, f"body is not valid JSON: {exc}") from None
    return [msgspec.Raw(line) for line in body.splitlines() if line.strip()]


def create_app(settings: Settings, producer: AsyncProducer | None = None) -> FastAPI:
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
    app.add_exception_handler(Problem, problem_response)  # type: ignore[arg-type]

    @app.post(
        "/api/webeventspub",
        summary="One event, exactly as the original tracker snippet sends it",
        openapi_extra=_request_schema("WebEvent"),
        responses=_responses(),
    )
    async def webeventspub(request: Request) -> Response:
        site = collector.site(request)
        body = await collector.body(request)
        try:
            event = _decode_one.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            collector.metrics.rejected.labels("invalid").inc()
            raise validation_problem(exc) from None
        await collector.produce([collector.record(event, request, site)])
        payload = {"accepted": 1, "id": event_id(event)}
        return Response(_ok.encode(payload), media_type="application/json")

    @app.post(
        "/v1/events",
        summary="A batch of events: a JSON array or newline-delimited JSON",
        openapi_extra=_request_schema("WebEventBatch"),
        responses=_responses(),
    )
    async def events(request: Request) -> Response:
        site = collector.site(request)
        body = await collector.body(request)
        raws = split_batch(body)
        limit = collector.config.max_batch_events
        if len(raws) > limit:
            raise Problem(413, f"batch of {len(raws)} events is over the limit of {limit}")
        records: list[tuple[str, bytes, bytes]] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(raws):
            try:
                records.append(collector.record(_decode_one.decode(raw), request, site))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                problem = validation_problem(exc)
                rejected.append({"index": index, "error": problem.message, "field": problem.field})
        if rejected:
            collector.metrics.rejected.labels("invalid").inc(len(rejected))
        if not records:
            raise Problem(422, "no valid event in the batch", rejected=rejected)
        await collector.produce(records)
        payload = {"accepted": len(records), "rejected": rejected}
        return Response(_ok.encode(payload), media_type="application/json")

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
            _ok.encode(body), status_code=200 if up else 503, media_type="application/json"
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)

    _add_schemas(app)
    app.add_middleware(AllowlistCORS, allowed_origins=collector.config.allowed_origins)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory`` with several worker processes: settings from the environment."""
    from clickstream.settings import load_settings

    return create_app(load_settings())


def _tracker_source() -> bytes:
    return (
        resources.files("clickstream.collector").joinpath("static", "clickstream.js").read_bytes()
    )


def _request_schema(name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    content = {"application/json": {"schema": ref}, "text/plain": {"schema": ref}}
    return {"requestBody": {"required": True, "content": content}}


def _responses() -> dict[int | str, dict[str, Any]]:
    return {
        400: {"description": "The body is not JSON"},
        401: {"description": "Missing or unknown write key"},
        403: {"description": "The page's origin is not allowed"},
        413: {"description": "Body or batch over the limit"},
        422: {"description": "An event does not match its schema; the field is named"},
        503: {"description": "Kafka did not acknowledge; retry after Retry-After seconds"},
    }


def _add_schemas(app: FastAPI) -> None:
    """Put the msgspec event schemas into the OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
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
