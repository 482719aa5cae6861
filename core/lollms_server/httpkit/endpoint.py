"""The `endpoint` decorator: validates a route's body, query or form and documents it."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web
from marshmallow import Schema, ValidationError

from ..errors import InvalidRequest, ValidationFailed
from ..ignored_fields import REQUEST_KEY as IGNORED_FIELDS
from ..ignored_fields import collecting
from ..request_limits import RequestLimits, limits_in_force
from .body import UploadedFile, limits_of, read_body, read_form

__all__ = ["UploadedFile", "endpoint", "read_form", "read_json", "validate"]

Handler = Callable[..., Awaitable[web.StreamResponse]]
T = TypeVar("T")
MAX_JSON_DEPTH = 64
# a \uD800-\uDFFF escape, or a surrogate encoded as UTF-8 (json.loads lets both through)
MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# bodies over this are parsed and validated in a worker thread (big media, long prompts)
OFF_LOOP_BYTES = 256 * 1024
# problems named in a validation error: a body may hold max_json_values unknown fields
MAX_REPORTED = 32


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
    media_body: bool = False
    generates: bool = False


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
    media_body: bool = False,
    generates: bool = False,
) -> Callable[[Handler], Handler]:
    """Decorate a handler `(request, data)`; `data` is the validated body, form or query.

    `access`: who may call it: `public` (anyone), `user` (any key or local), `admin`.
    `media_body`: the body may carry media (base64 or files), so it may be up to `max_body_mb`;
    other bodies are limited to `max_text_body_mb`. A form always may (it carries files).
    `generates`: it starts a generation, so a draining server refuses it before rate limits
    count it (`security.auth`).
    """
    doc = EndpointDoc(
        summary,
        tag,
        body,
        query,
        form,
        response,
        streams,
        binary_response,
        access,
        media_body,
        generates,
    )

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            limits = limits_of(request)
            with collecting() as ignored:
                request[IGNORED_FIELDS] = ignored  # filled as the schema loads, even if it fails
                if body is not None:
                    raw = await read_body(request, media=media_body, json=True)
                    data = await off_loop_if_big(len(raw), load_json, body, raw, limits)
                elif form is not None:
                    fields = await read_form(request)
                    data = validate(form, fields, limits)
                elif query is not None:
                    data = validate(query, dict(request.query), limits)
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


async def off_loop_if_big(size: int, work: Callable[..., T], *args: Any) -> T:
    """Run `work(*args)` in a worker thread when the body is big, else here."""
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work, *args)
    return work(*args)


def load_json(schema: type[Schema], raw: bytes, limits: RequestLimits) -> dict[str, Any]:
    """Parse a JSON body and validate it with `schema`."""
    return validate(schema, parse_json(raw), limits)


def validate(
    schema: type[Schema], data: Any, limits: RequestLimits | None = None
) -> dict[str, Any]:
    """Load `data` with `schema` (list caps from `limits`); a failure is a 422 listing the
    first MAX_REPORTED fields' problems and how many more there are."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object, not {type(data).__name__}")
    try:
        with limits_in_force(limits or RequestLimits()):
            loaded: dict[str, Any] = schema_instance(schema).load(data)
    except ValidationError as exc:
        total = _count(exc.messages)
        shown = _first(exc.messages, [MAX_REPORTED])
        more = f"; and {total - MAX_REPORTED} more" if total > MAX_REPORTED else ""
        raise ValidationFailed(
            summarize(shown) + more,
            param=first_field(exc.messages),
            details={"fields": shown},
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


def _count(messages: Any) -> int:
    """How many problems summarize names in `messages` (a list is one)."""
    if isinstance(messages, dict):
        return sum(_count(sub) if isinstance(sub, dict) else 1 for sub in messages.values())
    return 1


def _first(messages: Any, budget: list[int]) -> Any:
    """`messages` cut to its first `budget[0]` problems (the budget is spent as they are kept)."""
    if not isinstance(messages, dict):
        budget[0] -= 1
        return messages
    kept: dict[Any, Any] = {}
    for key, sub in messages.items():
        if budget[0] <= 0:
            break
        kept[key] = _first(sub, budget)
    return kept


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def first_field(messages: Any) -> str | None:
    """The first field named in marshmallow's messages."""
    if isinstance(messages, dict) and messages:
        return str(next(iter(messages)))
    return None


async def read_json(request: web.Request, *, media: bool = False) -> Any:
    """The request body parsed as JSON; malformed, too deep or too large bodies are 4xx."""
    raw = await read_body(request, media=media, json=True)
    return await off_loop_if_big(len(raw), parse_json, raw)


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body; malformed or too deep bodies are 400."""
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    # nesting needs an opening bracket per level: most bodies have too few to walk the tree
    deep = raw.count(b"{") + raw.count(b"[") >= MAX_JSON_DEPTH
    if deep and _depth(value) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    if MAYBE_SURROGATE.search(raw) and _has_lone_surrogate(value):
        raise InvalidRequest("the JSON body holds an unpaired UTF-16 surrogate; send valid Unicode")
    return value


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
