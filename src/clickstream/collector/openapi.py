"""The collector's OpenAPI document (FastAPI's GET routes plus the two ASGI POST endpoints, with
the msgspec event schemas) and ``/docs``, Swagger UI served from the package (no CDN)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from clickstream.collector.ingest import MEDIA_TYPES
from clickstream.events.web import WebEvent

_ERRORS = {
    "400": "The body is not JSON, not UTF-8, or is empty; or JSON nested too deeply",
    "401": "Missing or unknown write key",
    "403": "The page's origin is not allowed",
    "408": "The body did not arrive within collector.body_timeout_s",
    "413": "Body or batch over the limit",
    "415": "The content type is not JSON or text",
    "422": "An event does not match its schema; the field is named",
    "503": "Kafka did not store the events; retry after Retry-After seconds",
}
_PROBLEM = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string"},
        "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/Rejected"}},
    },
    "required": ["error"],
}
_REJECTED = {
    "type": "object",
    "properties": {
        "index": {"type": "integer"},
        "error": {"type": "string"},
        "field": {"type": ["string", "null"]},
    },
    "required": ["index", "error", "field"],
}
_ONE_ANSWER = {
    "type": "object",
    "properties": {"accepted": {"type": "integer", "const": 1}, "id": {"type": "string"}},
    "required": ["accepted", "id"],
}
_BATCH_ANSWER = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "array", "items": {"$ref": "#/components/schemas/Rejected"}},
    },
    "required": ["accepted", "rejected"],
}
_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_ASSET_PATH = "/static/vendor/swagger-ui"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _post(summary: str, schema: str, answer: str, answer_schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    problem = _json({"$ref": "#/components/schemas/Problem"})
    responses: dict[str, Any] = {
        "200": {
            "description": answer,
            "content": _json({"$ref": f"#/components/schemas/{answer_schema}"}),
        }
    }
    for status, description in _ERRORS.items():
        responses[status] = {"description": description, "content": problem}
    responses["405"] = {
        "description": "Only POST (and OPTIONS) are served here",
        "headers": {"Allow": {"schema": {"type": "string"}}},
        "content": problem,
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {media: {"schema": ref} for media in sorted(MEDIA_TYPES)},
            },
            "parameters": [
                {
                    "name": "key",
                    "in": "query",
                    "required": False,
                    "description": "The site's write key (when collector.write_keys is set)",
                    "schema": {"type": "string"},
                }
            ],
            "responses": responses,
        }
    }


def add_openapi(app: FastAPI) -> None:
    """Replace FastAPI's document with one that also has the two ASGI POST endpoints."""

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
            "Accepted",
        )
        schema["paths"]["/v1/events"] = _post(
            "A batch of events: a JSON array (may be empty) or newline-delimited JSON",
            "WebEventBatch",
            'Kafka has the good ones: {"accepted": n, "rejected": [{index, error, field}]}',
            "BatchAccepted",
        )
        (one, batch), components = msgspec.json.schema_components(
            [WebEvent, list[WebEvent]], ref_template="#/components/schemas/{name}"
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(components)
        schemas["WebEvent"] = one
        schemas["WebEventBatch"] = batch
        schemas["Problem"] = _PROBLEM
        schemas["Rejected"] = _REJECTED
        schemas["Accepted"] = _ONE_ANSWER
        schemas["BatchAccepted"] = _BATCH_ANSWER
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_docs(app: FastAPI) -> None:
    """``GET /docs``: Swagger UI on ``/openapi.json``, its files served from the package."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{_ASSET_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSET_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{_ASSET_PATH}/favicon-32x32.png",
            # No badge that sends the document to an online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(_ASSET_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            return Response(status_code=404)
        data = _vendor().joinpath(name).read_bytes()
        return Response(
            data, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
        )


def _vendor() -> Any:
    return resources.files("clickstream.collector").joinpath("static", "vendor", "swagger-ui")
