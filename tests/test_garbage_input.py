"""Garbage sent to every route of the router: always a 4xx in the documented error shape.

The routes are read from `app.router.routes()` and their `EndpointDoc`, so a route added later
(any face) is covered without touching this file. Two probe routes with a multipart form are
mounted too, so form handling is exercised even before a face declares a form route.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from lollms_server.app import create_app
from lollms_server.builtin import tiny_media
from lollms_server.builtin.echo import speak
from lollms_server.config import Config
from lollms_server.faces.lollms.schemas import GenerateSchema
from lollms_server.httpkit.endpoint import UploadedFile, doc_of, endpoint
from lollms_server.httpkit.error_middleware import face_of
from lollms_server.keys import CONFIG

Client = TestClient[Any, Any]
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
LOLLMS_ERROR_KEYS = {"type", "message", "binding", "param", "details", "request_id"}
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}

WRONG_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    1e308,
    10**400,
    -(2**70),
    "",
    "x" * 100_000,
    "\u0000",
    "../../etc/passwd",
    "模型🙂\u202e",
    [],
    [None],
    [1, "a", {}],
    {},
    {"k": {"k": [1]}},
]

GARBAGE_BODIES: dict[str, bytes] = {
    "malformed": b'{"input_data": [',
    "not json": b"hello there",
    "list": b"[1, 2, 3]",
    "string": b'"a string"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "empty": b"",
    "blank": b"  \n\t ",
    "open brackets": b"[" * 10_000,
    "deep list": b"[" * 10_000 + b"]" * 10_000,
    "deep object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "deep but parseable": b'{"x":' + b"[" * 100 + b"]" * 100 + b"}",
    "invalid utf-8": b'{"text": "\xff\xfe\xc3\x28"}',
    "lone surrogate": b'{"text": "\\ud800"}',
    "utf-8 encoded surrogate": b'{"text": "\xed\xa0\x80", "data": "x"}',
    "surrogate key": b'{"\\udfff": 1}',
    "nan": b'{"text": NaN, "temperature": Infinity}',
    "huge int": b'{"tokens": [' + b"9" * 5_000 + b"]}",
    "unknown fields": b'{"__proto__": {"admin": true}, "zzz": 1}',
    "urlencoded": b"text=hello&model=echo",
    "nul bytes": b"\x00" * 64,
}

PATH_GARBAGE = [
    "..",
    "../..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f",
    "a%00b",
    "%00",
    "%",
    "%ZZ",
    "%FF%FE",
    "x" * 4_000,
    "%E6%A8%A1%E5%9E%8B%F0%9F%99%82",
    "%ED%A0%80",
    "echo%2Fecho%2F..",
    "%20",
    "echo;drop",
    "echo%0d%0aX-Injected:%201",
]


# -- probe routes: a multipart form on each face ---------------------------------------------


class UploadField(fields.Field):  # type: ignore[type-arg]
    """An uploaded file (the name is what the generic walker recognizes)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, UploadedFile):
            raise fields.ValidationError("must be an uploaded file")
        return value


class ProbeForm(Schema):
    file = UploadField(required=True)
    model = fields.String(required=True, validate=validate.Length(min=1, max=256))
    temperature = fields.Float(validate=validate.Range(0, 2))
    tags = fields.List(fields.String(), load_default=list)


async def _probe(request: web.Request, form: dict[str, Any]) -> web.Response:
    upload: UploadedFile = form["file"]
    return web.json_response({"size": len(upload.data), "model": form["model"]})


def add_probe_routes(app: web.Application) -> None:
    app.router.add_post(
        "/api/v1/_probe/upload", endpoint("probe", tag="lollms", form=ProbeForm)(_probe)
    )
    app.router.add_post(
        "/v1/_probe/upload", endpoint("probe", tag="openai", form=ProbeForm)(_probe)
    )


# -- the routes under test -------------------------------------------------------------------


@dataclass
class RouteInfo:
    method: str
    pattern: str
    url: str  # the pattern with valid values for its path parameters
    params: list[str]
    doc: Any
    methods: set[str] = field(default_factory=set)

    @property
    def is_api(self) -> bool:
        return self.url.startswith(("/api/", "/v1/")) or self.url == "/v1"


def routes_of(app: web.Application) -> list[RouteInfo]:
    """Every route but HEAD twins, wildcard methods and static folders."""
    found: list[RouteInfo] = []
    methods: dict[str, set[str]] = {}
    for route in app.router.routes():
        resource = route.resource
        if route.method not in METHODS or resource is None:
            continue
        if isinstance(resource, web.StaticResource):
            continue
        info = resource.get_info()
        params = sorted(info["pattern"].groupindex) if "pattern" in info else []
        url = resource.url_for(**{p: valid_param(p) for p in params}).path
        methods.setdefault(resource.canonical, set()).add(route.method)
        found.append(
            RouteInfo(route.method, resource.canonical, url, params, doc_of(route.handler))
        )
    for route_info in found:
        route_info.methods = methods[route_info.pattern]
    return found


def valid_param(name: str) -> str:
    return "echo/echo" if "model" in name else "echo"


# -- checking responses ----------------------------------------------------------------------


@dataclass
class Checker:
    """Collects every violation so that one run reports them all."""

    problems: list[str] = field(default_factory=list)
    checked: int = 0

    def check(
        self,
        label: str,
        path: str,
        status: int,
        content_type: str,
        raw: bytes,
        *,
        ok: tuple[int, ...] = (),
        expect: int | tuple[int, ...] | None = None,
    ) -> None:
        self.checked += 1
        where = f"{label} -> {path[:120]}: {status}"
        if status in ok or (200 <= status < 300 and 200 in ok):
            return
        api = path.startswith(("/api/", "/v1/")) or path == "/v1"
        if not api and status < 500 and expect is None:
            return  # pages may redirect (login, tabs) or report in-band (SSE); never a 5xx
        expected = (expect,) if isinstance(expect, int) else expect
        if expected is not None and status not in expected:
            self.problems.append(f"{where}, expected {expect}: {raw[:300]!r}")
            return
        if not 400 <= status < 500:
            self.problems.append(f"{where}, expected a 4xx: {raw[:300]!r}")
            return
        if not api and content_type != "application/json":
            return  # pages answer errors with HTML
        problem = shape_problem(path, content_type, raw)
        if problem:
            self.problems.append(f"{where}, {problem}: {raw[:300]!r}")

    def assert_clean(self, minimum: int) -> None:
        assert self.checked >= minimum, f"only {self.checked} requests were checked"
        report = "\n".join(self.problems[:60])
        assert not self.problems, f"{len(self.problems)} problems:\n{report}"


def shape_problem(path: str, content_type: str, raw: bytes) -> str | None:
    """What is wrong with an error body for the face of `path`, or None."""
    if content_type != "application/json":
        return f"content type {content_type!r} instead of application/json"
    try:
        body = json.loads(raw)
    except ValueError:
        return "a body that is not JSON"
    if face_of(path) == "ollama":  # Ollama's shape: {"error": "message"}
        if not isinstance(body, dict) or set(body) != {"error"}:
            return "not {'error': '...'}"
        return None if isinstance(body["error"], str) and body["error"] else "error not a string"
    # the lollms face adds upstream lollms_server's `detail` string (its clients read it)
    keys = {"error"} if face_of(path) == "openai" else {"error", "detail"}
    if not isinstance(body, dict) or set(body) != keys or not isinstance(body["error"], dict):
        return f"not {sorted(keys)} with an error object"
    error = body["error"]
    if "detail" in keys and body["detail"] != error.get("message"):
        return "detail is not the error message"
    if face_of(path) == "openai":
        if set(error) != OPENAI_ERROR_KEYS:
            return f"OpenAI error keys {sorted(error)}"
        if not (isinstance(error["message"], str) and isinstance(error["type"], str)):
            return "OpenAI message/type not strings"
        if not all(error[k] is None or isinstance(error[k], str) for k in ("param", "code")):
            return "OpenAI param/code neither string nor null"
        return None
    if not {"type", "message"} <= set(error) <= LOLLMS_ERROR_KEYS:
        return f"lollms error keys {sorted(error)}"
    if not (isinstance(error["type"], str) and isinstance(error["message"], str)):
        return "lollms type/message not strings"
    return None


async def send(
    client: Client,
    checker: Checker,
    label: str,
    method: str,
    path: str,
    *,
    ok: tuple[int, ...] = (),
    expect: int | tuple[int, ...] | None = None,
    **kwargs: Any,
) -> int:
    response = await client.request(method, path, **kwargs)
    raw = await response.read()
    checker.check(label, path, response.status, response.content_type, raw, ok=ok, expect=expect)
    return response.status


async def raw_request(
    client: Client, method: str, target: str, body: bytes = b"", headers: str = ""
) -> tuple[int, str, bytes]:
    """Send bytes exactly as given (no client-side normalization of `..` or escapes)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{client.server.port}\r\n"
            "Connection: close\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n"
        )
        writer.write(head.encode("utf-8", "surrogateescape") + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    header_bytes, _, payload = response.partition(b"\r\n\r\n")
    lines = header_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    found = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    lowered = {k.lower(): v for k, v in found.items()}
    if lowered.get("transfer-encoding") == "chunked":
        payload = dechunk(payload)
    content_type = lowered.get("content-type", "").split(";")[0].strip()
    return status, content_type, payload


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


# -- example bodies and mutations from a schema ----------------------------------------------


def is_upload(value_field: fields.Field[Any]) -> bool:
    name = type(value_field).__name__.lower()
    return "upload" in name or "file" in name


def example_value(value_field: fields.Field[Any]) -> Any:
    """A plausible valid value for a field, from its type and validators."""
    for validator in value_field.validators:
        if isinstance(validator, validate.OneOf):
            return next(iter(validator.choices))
    if isinstance(value_field, fields.Nested):
        nested = value_field.schema
        return example_body(nested)
    if isinstance(value_field, fields.List):
        return [example_value(value_field.inner)]
    if isinstance(value_field, fields.Boolean):
        return False
    if isinstance(value_field, (fields.Integer, fields.Float)):
        for validator in value_field.validators:
            if isinstance(validator, validate.Range) and validator.min is not None:
                return validator.min if validator.min > 0 else 1
        return 1
    if isinstance(value_field, fields.Dict):
        return {}
    return "echo"


def example_body(schema: Schema) -> dict[str, Any]:
    """The required fields of a schema filled with plausible values."""
    return {
        key_of(name, f): example_value(f)
        for name, f in schema.fields.items()
        if f.required and not f.dump_only
    }


# valid bodies where the schema alone cannot tell (a known route without one gets a generic one)
KNOWN_GOOD: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    "/audio2text": {"audio_data": base64.b64encode(speak("hi")).decode()},  # a real WAV
    "/lollms/v1/images/edit": {  # a real PNG
        "prompt": "hi",
        "image": base64.b64encode(tiny_media.png(tiny_media.gradient(2, 2, 0))).decode(),
    },
}


def good_body(url: str, schema: Schema) -> dict[str, Any]:
    return copy.deepcopy(KNOWN_GOOD.get(url) or example_body(schema))


def key_of(name: str, value_field: fields.Field[Any]) -> str:
    return value_field.data_key or name


Path = tuple[str | int, ...]


def field_paths(schema: Schema, prefix: Path = ()) -> Iterator[tuple[Path, Schema]]:
    """Every field path of a schema, nested schemas and lists of them included."""
    for name, value_field in schema.fields.items():
        if value_field.dump_only:
            continue
        path = (*prefix, key_of(name, value_field))
        yield path, schema
        if isinstance(value_field, fields.Nested):
            yield from field_paths(value_field.schema, path)
        elif isinstance(value_field, fields.List) and isinstance(value_field.inner, fields.Nested):
            yield from field_paths(value_field.inner.schema, (*path, 0))


def object_paths(schema: Schema, prefix: Path = ()) -> Iterator[Path]:
    """The paths of the body itself and of every nested object in it."""
    yield prefix
    for name, value_field in schema.fields.items():
        path = (*prefix, key_of(name, value_field))
        if isinstance(value_field, fields.Nested):
            yield from object_paths(value_field.schema, path)
        elif isinstance(value_field, fields.List) and isinstance(value_field.inner, fields.Nested):
            yield from object_paths(value_field.inner.schema, (*path, 0))


def with_value(base: dict[str, Any], schema: Schema, path: Path, value: Any) -> dict[str, Any]:
    """A copy of `base` with `value` at `path`, creating the containers on the way."""
    body = copy.deepcopy(base)
    node: Any = body
    current: Schema | None = schema
    for step in path[:-1]:
        if isinstance(step, int):
            while len(node) <= step:
                node.append({})
            node = node[step]
            continue
        assert current is not None
        sub_field = next(f for n, f in current.fields.items() if key_of(n, f) == step)
        if step not in node or not isinstance(node[step], (dict, list)):
            node[step] = example_value(sub_field)
            if isinstance(node[step], list) and not node[step]:
                node[step] = [{}]
        node = node[step]
        inner = sub_field.inner if isinstance(sub_field, fields.List) else sub_field
        current = inner.schema if isinstance(inner, fields.Nested) else None
    node[path[-1]] = value
    return body


# -- fixtures --------------------------------------------------------------------------------


async def start(aiohttp_client: Any, config: Config) -> Client:
    app = create_app(config)
    add_probe_routes(app)
    client: Client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
    return client


@pytest.fixture
async def garbage_client(aiohttp_client: Any, make_config: Any) -> Client:
    return await start(aiohttp_client, make_config())


@pytest.fixture
def routes(garbage_client: Client) -> list[RouteInfo]:
    found = routes_of(garbage_client.server.app)
    assert any(r.url == "/api/v1/generate" for r in found)
    return found


# -- the tests -------------------------------------------------------------------------------


async def test_garbage_bodies(garbage_client: Client, routes: list[RouteInfo]) -> None:
    checker = Checker()
    for route in routes:
        if route.method == "GET":
            continue
        for name, raw in GARBAGE_BODIES.items():
            for content_type in ("application/json", "text/plain", "multipart/form-data"):
                await send(
                    garbage_client,
                    checker,
                    f"{route.method} {name} as {content_type}",
                    route.method,
                    route.url,
                    data=raw,
                    headers={"Content-Type": content_type},
                )
        if route.doc is None or route.doc.form is None:
            continue
        await send(
            garbage_client,
            checker,
            "multipart without boundary",
            route.method,
            route.url,
            data=b"--x\r\nContent-Disposition: form-data; name=model\r\n\r\necho\r\n--x--\r\n",
            headers={"Content-Type": "multipart/form-data"},
        )
        await send(
            garbage_client,
            checker,
            "truncated multipart",
            route.method,
            route.url,
            data=b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nech',
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
    checker.assert_clean(minimum=100)


async def test_json_and_multipart_confusion(
    garbage_client: Client, routes: list[RouteInfo]
) -> None:
    checker = Checker()
    for route in routes:
        if route.doc is None:
            continue
        if route.doc.body is not None:
            form = FormData()
            for key, value in example_body(route.doc.body()).items():
                form.add_field(key, json.dumps(value))
            form.add_field("file", b"\x89PNG", filename="x.png", content_type="image/png")
            await send(
                garbage_client, checker, "multipart to JSON", route.method, route.url, data=form
            )
            base = json.dumps(example_body(route.doc.body())).encode()
            for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
                # a valid JSON object under another content type: accepted or a clean 4xx
                await send(
                    garbage_client,
                    checker,
                    f"JSON as {content_type}",
                    route.method,
                    route.url,
                    data=base,
                    headers={"Content-Type": content_type},
                    ok=(200,),
                )
        if route.doc.form is not None:
            await send(
                garbage_client,
                checker,
                "JSON to multipart",
                route.method,
                route.url,
                json=example_body(route.doc.form()),
                expect=415,
            )
            await send(
                garbage_client,
                checker,
                "urlencoded to multipart",
                route.method,
                route.url,
                data={"model": "echo"},
                expect=415,
            )
    checker.assert_clean(minimum=10)


async def test_wrong_types_for_every_field(garbage_client: Client, routes: list[RouteInfo]) -> None:
    checker = Checker()
    for route in routes:
        if route.doc is None or route.doc.body is None:
            continue
        schema = route.doc.body()
        base = good_body(route.url, schema)
        status = await send(
            garbage_client,
            checker,
            "the example body",
            route.method,
            route.url,
            json=base,
            ok=(200, 201),
        )
        # the mutations below must start from a body the route accepts
        assert status in (200, 201) or route.url.startswith("/v1/"), (route.url, base, status)
        for path, _ in field_paths(schema):
            for value in WRONG_VALUES:
                body = with_value(base, schema, path, value)
                label = f"{path}={json.dumps(value)[:40]}"
                # some of these values may be valid for the field: then any 2xx is fine
                await send(
                    garbage_client,
                    checker,
                    label,
                    route.method,
                    route.url,
                    json=body,
                    ok=(200, 201),
                )
        for path in object_paths(schema):
            body = with_value(base, schema, (*path, "zz_unknown_field"), 1)
            await send(
                garbage_client,
                checker,
                f"unknown field under {path}",
                route.method,
                route.url,
                json=body,
                ok=(200,),
            )
        await send(
            garbage_client,
            checker,
            "deep JSON in a field",
            route.method,
            route.url,
            data=json.dumps(base)[:-1].encode() + b', "zz": ' + b"[" * 70 + b"]" * 70 + b"}",
            headers={"Content-Type": "application/json"},
            expect=400,
        )
    checker.assert_clean(minimum=200)


FORM_VARIANTS = (
    "missing",
    "empty",
    "huge",
    "nul",
    "invalid utf-8",
    "file for text",
    "text for file",
    "repeated",
    "traversal filename",
)


def multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body built by hand (FormData cannot send invalid UTF-8 in a text field)."""
    boundary = "garbage-boundary-1234"
    out = b""
    for name, payload, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def garbage_form(schema: Schema, target: str, variant: str) -> tuple[bytes, str]:
    """The required fields of a form schema, with `target` spoiled as `variant` says."""
    payloads = {
        "empty": b"",
        "huge": b"x" * 100_000,
        "nul": b"\x00",
        "invalid utf-8": b"\xff\xfe\xc3\x28",
    }
    parts: list[tuple[str, bytes, str | None]] = []
    for name, value_field in schema.fields.items():
        if name != target and not value_field.required:
            continue
        if name == target and variant == "missing":
            continue
        payload = payloads.get(variant, b"echo") if name == target else b"echo"
        upload = is_upload(value_field)
        if name == target and variant in ("file for text", "text for file"):
            upload = variant == "file for text"
        filename = "x.bin" if upload else None
        if name == target and variant == "traversal filename":
            filename = "../../../etc/passwd\x00.png"
        key = key_of(name, value_field)
        parts.append((key, payload, filename))
        if name == target and variant == "repeated":
            parts.append((key, payload, filename))
    return multipart(parts)


async def test_form_fields(garbage_client: Client, routes: list[RouteInfo]) -> None:
    checker = Checker()
    forms = 0
    for route in routes:
        if route.doc is None or route.doc.form is None:
            continue
        forms += 1
        schema = route.doc.form()
        for name in schema.fields:
            for variant in FORM_VARIANTS:
                body, content_type = garbage_form(schema, name, variant)
                await send(
                    garbage_client,
                    checker,
                    f"form {name} {variant}",
                    route.method,
                    route.url,
                    data=body,
                    headers={"Content-Type": content_type},
                    ok=(200,),
                )
    checker.assert_clean(minimum=forms * 2 * len(FORM_VARIANTS))


async def test_query_garbage(garbage_client: Client, routes: list[RouteInfo]) -> None:
    checker = Checker()
    for route in routes:
        if route.method != "GET":
            continue
        documented = route.doc is not None and route.doc.query is not None
        queries: list[str] = ["zz=1", "%ZZ=%FF", "a=" + "x" * 4000, "=&&=", "model_name=%00"]
        if documented:
            queries.append("")
            for name in route.doc.query().fields:
                queries += [
                    f"{name}=",
                    f"{name}=" + "x" * 4000,
                    f"{name}=a&{name}=b",
                    f"{name}=%C3%28",
                    f"{name}=%ED%A0%80",
                    f"{name}[]=1",
                ]
        for query in queries:
            target = f"{route.url}?{query}" if query else route.url
            status, ctype, raw = await raw_request(garbage_client, "GET", target)
            checker.check(f"GET ?{query[:40]}", route.url, status, ctype, raw, ok=(200,))
    checker.assert_clean(minimum=20)


async def test_path_parameter_garbage(garbage_client: Client, routes: list[RouteInfo]) -> None:
    checker = Checker()
    seen: set[tuple[str, str]] = set()
    for route in routes:
        if not route.params or (route.method, route.pattern) in seen:
            continue
        seen.add((route.method, route.pattern))
        for param in route.params:
            for garbage in PATH_GARBAGE:
                marker = valid_param(param)
                target = route.url.replace(marker, garbage, 1)
                if route.method == "GET" and route.doc and route.doc.query is not None:
                    target += "?model_name=echo"
                body = b"{}" if route.method != "GET" else b""
                status, ctype, raw = await raw_request(
                    garbage_client,
                    route.method,
                    target,
                    body,
                    "Content-Type: application/json\r\n",
                )
                checker.check(f"{route.method} path {garbage[:30]}", target, status, ctype, raw)
        # raw non-UTF-8 bytes in the request line itself
        target = route.url.replace(valid_param(route.params[0]), "\udcff\udcfe", 1)
        status, ctype, raw = await raw_request(garbage_client, route.method, target)
        # aiohttp's HTTP parser rejects this before any routing or middleware runs: a plain
        # 400 is all that can be answered, and no handler ever sees the request
        if status != 400:
            checker.problems.append(f"raw bytes in the path of {route.url}: {status} {raw!r}")
    checker.assert_clean(minimum=2 * len(PATH_GARBAGE))


async def test_wrong_methods_and_unknown_routes(
    garbage_client: Client, routes: list[RouteInfo]
) -> None:
    checker = Checker()
    for route in routes:
        for method in METHODS:
            if method in route.methods:
                continue
            await send(
                garbage_client,
                checker,
                f"{method} on {sorted(route.methods)}",
                method,
                route.url,
                expect=405,
            )
    for path in (
        "/api/v1/nope",
        "/api/v1/generate/extra",
        "/api/v1/",
        "/api/v2/generate",
        "/v1/nope",
        "/v1/chat/completions/extra",
        "/v1/",
        "/api/v1/list_models/x",
        "/api/nope",
        "/api/chat/extra",
    ):
        for method in ("GET", "POST"):
            await send(garbage_client, checker, f"{method} unknown", method, path, expect=404)
    response = await garbage_client.get("/definitely/not/here")
    assert response.status == 404
    checker.assert_clean(minimum=20)


async def test_method_not_allowed_names_allowed_methods(garbage_client: Client) -> None:
    response = await garbage_client.get("/api/v1/generate")
    body = await response.json()
    assert response.status == 405
    assert body["error"]["type"] == "method_not_allowed"
    assert "POST" in body["error"]["message"]
    assert "POST" in response.headers.get("Allow", "POST")
    response = await garbage_client.delete("/v1/_probe/upload")
    body = await response.json()
    assert response.status == 405
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "method_not_allowed"


async def test_oversize_bodies_are_413(aiohttp_client: Any, make_config: Any) -> None:
    config = make_config(max_body_mb=0.01)
    client = await start(aiohttp_client, config)
    checker = Checker()
    big = 3 * config.max_body_bytes
    for route in routes_of(client.server.app):
        if route.method == "GET" or (route.doc and not (route.doc.body or route.doc.form)):
            continue  # a route that reads no body never sees its size
        padded = json.dumps({"text": "a" * big}).encode()
        await send(
            client,
            checker,
            "oversize JSON",
            route.method,
            route.url,
            data=padded,
            headers={"Content-Type": "application/json"},
            expect=(413, 415) if route.doc and route.doc.form else 413,
        )

        async def chunks() -> Any:
            for _ in range(6):
                yield b"a" * (config.max_body_bytes // 2)

        await send(
            client,
            checker,
            "oversize chunked",
            route.method,
            route.url,
            data=chunks(),
            headers={"Content-Type": "application/json"},
            expect=(413, 415) if route.doc and route.doc.form else 413,
        )
        form = FormData()
        form.add_field("model", "echo")
        form.add_field("file", b"\x00" * big, filename="big.wav", content_type="audio/wav")
        await send(
            client, checker, "oversize multipart", route.method, route.url, data=form, expect=413
        )
    checker.assert_clean(minimum=9)
    # a body under the limit still works on the same server
    response = await client.post(
        "/api/v1/generate", json={"input_data": [{"type": "text", "data": "small"}]}
    )
    assert response.status == 200


async def test_413_shape_on_each_face(aiohttp_client: Any, make_config: Any) -> None:
    client = await start(aiohttp_client, make_config(max_body_mb=0.01))
    response = await client.post("/api/v1/generate", data=b"x" * 50_000)
    body = await response.json()
    assert response.status == 413
    assert body["error"]["type"] == "payload_too_large"
    assert str(client.server.app[CONFIG].max_body_bytes) in body["error"]["message"]
    response = await client.post("/v1/_probe/upload", data=b"x" * 50_000)
    body = await response.json()
    assert response.status in (413, 415)
    assert set(body["error"]) == OPENAI_ERROR_KEYS


# -- a bounded property test over the generate schema ----------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
INPUT_ITEM = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["text", "image", "audio", "video", "document", "nope"]),
        "data": st.text(max_size=40) | JSON_VALUE,
    },
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "user_prompt", "input_image", ""])
        | st.text(max_size=70),
        "mime_type": st.none() | st.text(max_size=20),
        "metadata": JSON_VALUE,
        "extra": JSON_VALUE,
    },
)
GENERATE_KEYS = sorted(GenerateSchema().fields)
GENERATE_BODY = (
    st.fixed_dictionaries(
        {"input_data": st.lists(INPUT_ITEM, max_size=3) | JSON_VALUE},
        optional={
            **{key: JSON_VALUE for key in GENERATE_KEYS if key != "input_data"},
            "generation_type": st.sampled_from(
                ["ttt", "tti", "tts", "stt", "i2i", "ttv", "ttm", "audio2audio", "x"]
            ),
            "model_name": st.sampled_from(["echo", "think", "nope"]) | JSON_VALUE,
            "parameters": st.dictionaries(
                st.sampled_from(
                    ["temperature", "max_tokens", "stop", "seed", "width", "n", "zz", "Bad-Key"]
                ),
                JSON_VALUE,
                max_size=4,
            ),
        },
    )
    | JSON_VALUE
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=GENERATE_BODY)
async def test_generate_property(client: Client, body: Any) -> None:
    response = await client.post("/api/v1/generate", json=body)
    raw = await response.read()
    if response.status == 200:
        return
    problem = shape_problem("/api/v1/generate", response.content_type, raw)
    assert 400 <= response.status < 500, (body, raw[:300])
    assert problem is None, (problem, body, raw[:300])


async def test_oversize_is_refused_before_the_body_ends(
    aiohttp_client: Any, make_config: Any
) -> None:
    """The server answers 413 as soon as the limit is passed, without waiting for the rest."""
    client = await start(aiohttp_client, make_config(max_body_mb=0.01))
    never = asyncio.Event()
    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n"
    )

    def stalled(first: bytes) -> Any:
        async def body() -> Any:
            yield first
            for _ in range(64):  # 256 KiB, a few of the server's read chunks
                yield b"\x00" * 4096
            await never.wait()  # the client never finishes: only an early answer can come
            yield b""

        return body()

    for path, content_type, first in (
        ("/api/v1/generate", "application/json", b'{"input_data": "'),
        ("/v1/_probe/upload", "multipart/form-data; boundary=b", head),
        ("/api/v1/_probe/upload", "multipart/form-data; boundary=b", head),
    ):
        response = await asyncio.wait_for(
            client.post(path, data=stalled(first), headers={"Content-Type": content_type}), 5
        )
        assert response.status == 413, (path, await response.text())
        raw = await response.read()
        assert shape_problem(path, response.content_type, raw) is None, raw
        response.close()
