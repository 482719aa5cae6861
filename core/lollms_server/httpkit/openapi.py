"""OpenAPI document generated from the routes' marshmallow schemas.

The generator walks the application's router and reads the `EndpointDoc` that the `endpoint`
decorator attaches, so any route of any face (lollms, OpenAI, plugins) is documented as soon as
it is mounted. apispec is imported only when the document is first asked for, and the document
is built once per application.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields

from .. import __version__
from .endpoint import EndpointDoc, doc_of, endpoint
from .error_middleware import face_of
from .shapes import ErrorSchema, StringOrList

routes = web.RouteTableDef()

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/api/v1/openapi.json"
METHODS = ("get", "put", "post", "delete", "patch")
PATH_PARAM = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")
UPLOAD_WORDS = ("upload", "file")
TAG_DESCRIPTIONS = {
    "lollms": "The lollms API (upstream lollms_server shape) under /api/v1/",
    "openai": "The OpenAI-compatible API under /v1/",
    "ollama": "The Ollama-compatible API under /api/",
}
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
OLLAMA_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
SSE_DESCRIPTION = "Server-sent events (`data: <json>` lines) when the request asks to stream"
NDJSON_DESCRIPTION = "One JSON object per line; Ollama streams unless `stream` is false"

# one document per application; an Application is frozen once it serves, so no AppKey here
_CACHE: weakref.WeakKeyDictionary[web.Application, dict[str, Any]] = weakref.WeakKeyDictionary()


@routes.get(OPENAPI_PATH)
@endpoint(
    "This OpenAPI document, generated from the routes' schemas", tag="lollms", access="public"
)
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of every documented route of this server."""
    return web.json_response(openapi_document(request.app))


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of `app`, built on first use and cached."""
    document = _CACHE.get(app)
    if document is None:
        document = build_spec(app)
        _CACHE[app] = document
    return document


def build_spec(app: web.Application) -> dict[str, Any]:
    """Walk the router and build the OpenAPI document with apispec's marshmallow plugin."""
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    resolver = _name_resolver()
    plugin = MarshmallowPlugin(schema_name_resolver=resolver)
    spec = APISpec(
        title="lollms-server",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "One server for many AI backends: lollms, OpenAI and more."},
    )
    plugin.converter.add_attribute_function(_custom_field_property)  # type: ignore[union-attr]
    error_name = resolver(ErrorSchema)
    spec.components.schema(error_name, schema=ErrorSchema)
    spec.components.schema("OpenAIError", OPENAI_ERROR)
    spec.components.schema("OllamaError", OLLAMA_ERROR)
    spec.components.response(
        "OllamaError",
        {
            "description": "An error in Ollama's shape",
            "content": {"application/json": {"schema": "OllamaError"}},
        },
    )
    spec.components.response(
        "LollmsError",
        {"description": "An error", "content": {"application/json": {"schema": error_name}}},
    )
    spec.components.response(
        "OpenAIError",
        {
            "description": "An error in OpenAI's shape",
            "content": {"application/json": {"schema": "OpenAIError"}},
        },
    )
    tags: set[str] = set()
    for path, operations, parameters in _collect(app):
        for operation in operations.values():
            tags.update(operation["tags"])
        spec.path(path=path, operations=operations, parameters=parameters)
    for tag in sorted(tags):
        spec.tag({"name": tag, "description": TAG_DESCRIPTIONS.get(tag, tag)})
    document: dict[str, Any] = spec.to_dict()
    return document


def _collect(
    app: web.Application,
) -> list[tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]]:
    """(path, operations by method, path parameters) for every documented route, in order."""
    paths: dict[str, tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]] = {}
    operation_ids: set[str] = set()
    for route in app.router.routes():
        method = route.method.lower()
        doc = doc_of(route.handler)
        if method not in METHODS or doc is None or route.resource is None:
            continue
        path = route.resource.canonical
        if path not in paths:
            params = [
                {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
                for name in PATH_PARAM.findall(path)
            ]
            paths[path] = ({}, params)
        operation_id = _unique(
            f"{doc.tag}_{getattr(route.handler, '__name__', method)}", operation_ids
        )
        paths[path][0][method] = _operation(doc, path, operation_id, route.handler)
    return [(path, ops, params) for path, (ops, params) in paths.items()]


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate)
    return candidate


def _operation(doc: EndpointDoc, path: str, operation_id: str, handler: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [doc.tag],
        "summary": doc.summary,
        "operationId": operation_id,
        "responses": _responses(doc, path),
    }
    description = (getattr(handler, "__doc__", None) or "").strip()
    if description and description != doc.summary:
        operation["description"] = description
    if doc.query is not None:
        operation["parameters"] = [{"in": "query", "schema": doc.query}]
    if doc.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": doc.body}},
        }
    elif doc.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": doc.form}},
        }
    return operation


def _responses(doc: EndpointDoc, path: str) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if doc.response is not None:
        content["application/json"] = {"schema": doc.response}
    if doc.binary_response:
        content[doc.binary_response] = {"schema": {"type": "string", "format": "binary"}}
    if not content:
        content["application/json"] = {"schema": {"type": "object"}}
    if doc.streams and face_of(path) == "ollama":
        content["application/x-ndjson"] = {
            "schema": {"type": "string", "description": NDJSON_DESCRIPTION}
        }
    elif doc.streams:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": SSE_DESCRIPTION}
        }
    error = {"$ref": "#/components/responses/" + _error_response_name(path)}
    return {"200": {"description": "Success", "content": content}, "4XX": error, "5XX": error}


def _error_response_name(path: str) -> str:
    return {"openai": "OpenAIError", "ollama": "OllamaError"}.get(face_of(path), "LollmsError")


def _name_resolver() -> Callable[[type[Schema] | Schema], str]:
    """Component names from class names; a clash between modules gets a module prefix."""
    owners: dict[str, type[Schema]] = {}

    def resolve(schema: type[Schema] | Schema) -> str:
        cls = schema if isinstance(schema, type) else type(schema)
        name = cls.__name__.removesuffix("Schema") or cls.__name__
        owner = owners.setdefault(name, cls)
        if owner is not cls:
            module = cls.__module__.rsplit(".", 1)[-1]
            name = f"{module}.{name}"
            owners.setdefault(name, cls)
        return name

    return resolve


def _custom_field_property(self: Any, field: fields.Field[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenAPI properties of our custom fields (apispec knows only marshmallow's own)."""
    ret: dict[str, Any] = kwargs.get("ret", {})
    if isinstance(field, StringOrList):
        # choices apply to the string and to each item, not to the value as a whole
        choices = [c for c in ret.pop("enum", []) if c is not None]
        string: dict[str, Any] = {"type": "string", **({"enum": choices} if choices else {})}
        variants: list[dict[str, Any]] = [
            string,
            {"type": "array", "items": string, "maxItems": field.max_items},
        ]
        if field.allow_none:
            variants.append({"type": "null"})
        return {"oneOf": variants}
    class_name = type(field).__name__.lower()
    if any(word in class_name for word in UPLOAD_WORDS) and ret.get("type") != "array":
        return {"type": ["string", "null"] if field.allow_none else "string", "format": "binary"}
    return {}
