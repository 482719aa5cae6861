"""API docs: the server's own OpenAPI document rendered as a page (no CDN, no JavaScript).

Operations are grouped by tag; request bodies, query parameters and responses are flattened
into field tables (nested objects indented, `$ref`s resolved, cycles cut).
"""

from __future__ import annotations

import weakref
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from ..httpkit.openapi import OPENAPI_PATH, openapi_document
from ..security.auth import requires
from .forms import query_text
from .render import page_handler, render

routes = web.RouteTableDef()
# app -> its operations with their HTML (`rendered_operations`); the document never changes
_RENDERED: weakref.WeakKeyDictionary[web.Application, list[dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
MAX_DEPTH = 4
METHODS = ("get", "post", "put", "patch", "delete")
CONSTRAINTS = (
    ("minLength", "min length"),
    ("maxLength", "max length"),
    ("minimum", "≥"),
    ("maximum", "≤"),
    ("minItems", "min items"),
    ("maxItems", "max items"),
    ("format", "format"),
)


@routes.get("/api-docs", name="api_docs")
@requires("public")
@page_handler
async def api_docs(request: web.Request) -> web.Response:
    """Every documented route; `q` searches paths and summaries."""
    document = openapi_document(request.app)
    query = query_text(request, "q").lower()
    tags = matching(await rendered_operations(request), query)
    context = {
        "info": document.get("info", {}),
        "openapi_version": document.get("openapi"),
        "tags": tags,
        "count": sum(len(t["operations"]) for t in tags),
        "q": query_text(request, "q"),
        "spec_url": OPENAPI_PATH,
    }
    return await render(request, "apidocs.html", "_apidocs.html", context)


async def rendered_operations(request: web.Request) -> list[dict[str, Any]]:
    """`operations` of the app's document, each with its `html` (`_apidocs_operation.html`),
    rendered on first use and kept: the page is public, so a request only filters and joins
    them (rendering the whole page took ~14 ms of the loop per request)."""
    tags = _RENDERED.get(request.app)
    if tags is None:
        template = aiohttp_jinja2.get_env(request.app).get_template("_apidocs_operation.html")
        tags = operations(openapi_document(request.app))
        for tag in tags:
            for op in tag["operations"]:
                op["html"] = Markup(await template.render_async(op=op))
        _RENDERED[request.app] = tags
    return tags


def matching(tags: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """The tags whose operations match every word of `query`, with only those operations."""
    words = query.split()
    found = []
    for tag in tags:
        ops = [op for op in tag["operations"] if all(word in op["text"] for word in words)]
        if ops:
            found.append({**tag, "operations": ops})
    return found


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Tags with their operations, in document order; each operation's `text` is what
    `matching` searches."""
    components = document.get("components", {})
    descriptions = {t["name"]: t.get("description", "") for t in document.get("tags", [])}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            text = f"{method} {path} {operation.get('summary', '')}".lower()
            tag = (operation.get("tags") or ["other"])[0]
            found = _operation(method, path, operation, item.get("parameters", []), components)
            grouped.setdefault(tag, []).append({**found, "text": text})
    return [
        {"name": tag, "description": descriptions.get(tag, ""), "operations": ops}
        for tag, ops in grouped.items()
    ]


def _operation(
    method: str,
    path: str,
    operation: dict[str, Any],
    path_parameters: list[dict[str, Any]],
    components: dict[str, Any],
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for parameter in [*path_parameters, *operation.get("parameters", [])]:
        schema = _resolve(parameter.get("schema", {}), components)
        if "name" in parameter:
            row = _row(parameter["name"], schema, parameter.get("required", False), 0)
            row["where"] = parameter.get("in", "")
            parameters.append(row)
        else:  # a whole query schema: one row per property
            for row in schema_rows(schema, components):
                row["where"] = parameter.get("in", "")
                parameters.append(row)
    body = []
    for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
        schema = content.get("schema", {})
        body.append(
            {
                "media_type": media_type,
                "name": _ref_name(schema),
                "rows": schema_rows(schema, components),
            }
        )
    responses = []
    for code, response in operation.get("responses", {}).items():
        name = _ref_name(response)
        response = _resolve(response, components)
        media = [
            {"media_type": m, "name": _ref_name(c.get("schema", {}))}
            for m, c in response.get("content", {}).items()
        ]
        responses.append(
            {"code": code, "description": response.get("description", name), "media": media}
        )
    return {
        "method": method.upper(),
        "path": path,
        "id": operation.get("operationId", f"{method}-{path}"),
        "summary": operation.get("summary", ""),
        "description": operation.get("description", ""),
        "parameters": parameters,
        "body": body,
        "responses": responses,
    }


def schema_rows(
    schema: dict[str, Any],
    components: dict[str, Any],
    depth: int = 0,
    seen: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The fields of an object schema as rows, nested objects following at depth + 1."""
    ref = schema.get("$ref", "")
    if ref in seen or depth > MAX_DEPTH:
        return []
    seen = seen | {ref} if ref else seen
    schema = _resolve(schema, components)
    rows: list[dict[str, Any]] = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        rows.append(_row(name, _resolve(prop, components), name in required, depth, prop))
        inner = prop.get("items", prop) if _type_of(prop, components) == "array" else prop
        if _resolve(inner, components).get("properties"):
            rows.extend(schema_rows(inner, components, depth + 1, seen))
    return rows


def _row(
    name: str, schema: dict[str, Any], required: bool, depth: int, raw: Any = None
) -> dict[str, Any]:
    notes = [f"{label} {schema[key]}" for key, label in CONSTRAINTS if key in schema]
    if "enum" in schema:
        notes.append("one of " + ", ".join(str(v) for v in schema["enum"] if v is not None))
    if schema.get("default") is not None:
        notes.append(f"default {schema['default']}")
    return {
        "name": name,
        "type": _type_label(raw if raw is not None else schema, schema),
        "required": required,
        "notes": notes,
        "description": schema.get("description", ""),
        "depth": depth,
    }


def _type_label(raw: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in raw:
        return _ref_name(raw)
    if "oneOf" in schema or "anyOf" in schema:
        variants = schema.get("oneOf") or schema.get("anyOf") or []
        return " | ".join(_type_label(v, v) for v in variants)
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " | ".join(str(k) for k in kind)
    if kind == "array":
        return f"array of {_type_label(schema.get('items', {}), schema.get('items', {}))}"
    return str(kind)


def _type_of(schema: dict[str, Any], components: dict[str, Any]) -> str:
    kind = _resolve(schema, components).get("type", "")
    return kind if isinstance(kind, str) else ""


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (#/components/<kind>/<name>)."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/components/"):
        return schema
    parts = ref.removeprefix("#/components/").split("/")
    if len(parts) != 2:
        return schema
    kind, name = parts
    resolved = components.get(kind, {}).get(name)
    return resolved if isinstance(resolved, dict) else schema
