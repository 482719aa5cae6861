"""The `endpoint` decorator: validates a route's body, query or form and documents it."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from marshmallow import Schema, ValidationError

from ..errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from ..keys import CONFIG

Handler = Callable[..., Awaitable[web.StreamResponse]]
MAX_JSON_DEPTH = 64
# a \uD800-\uDFFF escape, or a surrogate encoded as UTF-8 (json.loads lets both through)
MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


@dataclass(frozen=True)
class EndpointDoc:
    """What the OpenAPI generator needs to know about a route."""

    summary: str
    tag: str
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    form: type[Schema] | None = None
    response: type[Schema] | None = None
    streams: bool = False
    binary_response: str | None = None
    access: Literal["public", "user", "admin"] = "user"


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart form."""

    filename: str
    content_type: str
    data: bytes


def endpoint(
    summary: str,
    *,
    tag: str,
    body: type[Schema] | None = None,
    query: type[Schema] | None = None,
    form: type[Schema] | None = None,
    response: type[Schema] | None = None,
    streams: bool = False,
    binary_response: str | None = None,
    access: Literal["public", "user", "admin"] = "user",
) -> Callable[[Handler], Handler]:
    """Decorate a handler `(request, data)`; `data` is the validated body, form or query.

    `access`: who may call it: `public` (anyone), `user` (any key or local), `admin`.
    """
    doc = EndpointDoc(summary, tag, body, query, form, response, streams, binary_response, access)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            if body is not None:
                data = validate(body, await read_json(request))
            elif form is not None:
                data = validate(form, await read_form(request))
            elif query is not None:
                data = validate(query, dict(request.query))
            else:
                return await handler(request)
            return await handler(request, data)

        wrapper.__lollms_doc__ = doc  # type: ignore[attr-defined]
        return wrapper

    return decorate


def doc_of(handler: Any) -> EndpointDoc | None:
    """The EndpointDoc attached by `endpoint`, if any."""
    return getattr(handler, "__lollms_doc__", None)


@functools.cache
def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one deep-copies its fields (~1 ms), and
    `load` does not change the instance, so requests share it."""
    return schema()


def validate(schema: type[Schema], data: Any) -> dict[str, Any]:
    """Load `data` with `schema`; a failure is a 422 listing every field's problem."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, not {type(data).__name__}")
    try:
        loaded: dict[str, Any] = schema_instance(schema).load(data)
    except ValidationError as exc:
        raise ValidationFailed(
            summarize(exc.messages),
            param=first_field(exc.messages),
            details={"fields": exc.messages},
        ) from exc
    return loaded


def summarize(messages: Any, prefix: str = "") -> str:
    """'field: problem; other.field: problem' from marshmallow's nested messages."""
    parts: list[str] = []
    if isinstance(messages, dict):
        for key, sub in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(sub, (dict, list)) and not _is_flat_list(sub):
                parts.append(summarize(sub, name))
            else:
                parts.append(f"{name}: {' '.join(sub) if isinstance(sub, list) else sub}")
    elif isinstance(messages, list):
        parts.append(f"{prefix or 'body'}: {' '.join(str(m) for m in messages)}")
    return "; ".join(parts)


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def first_field(messages: Any) -> str | None:
    """The first field named in marshmallow's messages."""
    if isinstance(messages, dict) and messages:
        return str(next(iter(messages)))
    return None


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON; malformed, too deep or too large bodies are 4xx."""
    raw = await read_body(request)
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    if MAYBE_SURROGATE.search(raw) and _has_lone_surrogate(value):
        raise InvalidRequest("the JSON body holds an unpaired UTF-16 surrogate; send valid Unicode")
    return value


async def read_body(request: web.Request) -> bytes:
    """The raw body, with aiohttp's size limit reported as our 413."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"the request body is larger than {request.app[CONFIG].max_body_bytes} bytes"
        ) from exc


async def read_form(request: web.Request) -> dict[str, Any]:
    """A multipart form: text fields as strings (repeated names as lists), files as UploadedFile."""
    if not request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType("send this endpoint a multipart/form-data body")
    limit = request.app[CONFIG].max_body_bytes
    fields: dict[str, Any] = {}
    total = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            data = await part.read()  # aiohttp refuses a part over client_max_size
            total += len(data)
            if total > limit:
                raise PayloadTooLarge(f"the upload is larger than {limit} bytes")
            value: Any
            if part.filename is not None:
                ctype = part.headers.get("Content-Type", "application/octet-stream")
                value = UploadedFile(part.filename, ctype, bytes(data))
            else:
                value = bytes(data).decode("utf-8", errors="replace")
            name = part.name.removesuffix("[]")
            if name in fields:
                previous = fields[name]
                fields[name] = (
                    [*previous, value] if isinstance(previous, list) else [previous, value]
                )
            else:
                fields[name] = [value] if part.name.endswith("[]") else value
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # a malformed body
        detail = exc.message if isinstance(exc, HttpProcessingError) else exc
        raise InvalidRequest(f"malformed multipart body: {detail}") from exc
    return fields


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string (or key) cannot be encoded as UTF-8 (an unpaired surrogate)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level
