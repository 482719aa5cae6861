"""The OpenAPI document: valid, complete, and generated from the routes' own metadata."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from marshmallow import Schema, fields
from marshmallow.validate import OneOf
from openapi_spec_validator import validate

from lollms_server.httpkit.endpoint import UploadedFile, doc_of, endpoint
from lollms_server.httpkit.openapi import OPENAPI_PATH, build_spec, openapi_document
from lollms_server.httpkit.shapes import StringOrList

METHODS = {"get", "post", "put", "delete", "patch"}


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s inside the document until a concrete node."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.fixture
async def document(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get(OPENAPI_PATH)
    assert response.status == 200
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


async def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "lollms-server"
    assert {tag["name"] for tag in document["tags"]} >= {"lollms"}


async def test_live_app_builds_without_warnings(client: TestClient[Any, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # name clashes, unknown field classes...
        validate(build_spec(client.server.app))


async def test_every_documented_route_appears(
    client: TestClient[Any, Any], document: dict[str, Any]
) -> None:
    documented = 0
    for route in client.server.app.router.routes():
        doc = doc_of(route.handler)
        method = route.method.lower()
        if doc is None or method not in METHODS:
            continue
        documented += 1
        path = route.resource.canonical
        assert path in document["paths"], path
        operation = document["paths"][path][method]
        assert operation["summary"] == doc.summary
        assert operation["tags"] == [doc.tag]
    assert documented >= 14  # the lollms face alone has 14 documented routes
    operation_ids = [
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(operation_ids) == len(set(operation_ids)) == documented


async def test_errors_in_the_shape_of_each_face(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        if path.startswith("/v1/"):
            expected = "OpenAIError"
        elif path.startswith("/api/") and not path.startswith("/api/v1/"):
            expected = "OllamaError"
        else:
            expected = "LollmsError"
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status in ("4XX", "5XX"):
                ref = operation["responses"][status]["$ref"]
                assert ref == f"#/components/responses/{expected}", (path, method)
    if any(path.startswith("/v1/") for path in document["paths"]):
        assert "openai" in {tag["name"] for tag in document["tags"]}
    chat = document["paths"]["/api/chat"]["post"]["responses"]["200"]["content"]
    assert "application/x-ndjson" in chat and "text/event-stream" not in chat


async def test_generate_request_and_responses(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/generate"]["post"]
    assert operation["requestBody"]["required"] is True
    body = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
    assert body["required"] == ["input_data"]
    assert body.get("additionalProperties", True) is True  # unknown fields ignored, as upstream
    assert "text_prompt" in body["properties"]
    item = resolve(document, body["properties"]["input_data"]["items"])
    assert set(item["properties"]["type"]["enum"]) == {
        "text",
        "image",
        "audio",
        "video",
        "document",
    }
    assert "tts" in body["properties"]["generation_type"]["enum"]
    parameters = resolve(document, body["properties"]["parameters"])
    assert parameters["additionalProperties"] is True  # extra parameters go to the binding
    assert parameters["properties"]["stop"]["oneOf"][0] == {"type": "string"}  # StringOrList
    ok = operation["responses"]["200"]["content"]
    assert "text/event-stream" in ok  # streams=True
    response = resolve(document, ok["application/json"]["schema"])
    assert {"output", "request_id", "execution_time"} <= set(response["properties"])
    for status in ("4XX", "5XX"):
        error = resolve(document, operation["responses"][status])
        schema = resolve(document, error["content"]["application/json"]["schema"])
        detail = resolve(document, schema["properties"]["error"])
        assert {"type", "message", "binding"} <= set(detail["properties"])


async def test_path_and_query_parameters(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        assert ":" not in path, f"regex left in {path}"
        names = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path
    info = document["paths"]["/api/v1/get_model_info/{instance}"]
    assert info["parameters"] == [
        {"in": "path", "name": "instance", "required": True, "schema": {"type": "string"}}
    ]
    query = info["get"]["parameters"]
    assert [(p["in"], p["name"], p["required"]) for p in query] == [("query", "model_name", False)]
    assert "requestBody" not in info["get"]
    assert "requestBody" not in document["paths"]["/api/v1/health"]["get"]


async def test_document_is_built_once_per_app(client: TestClient[Any, Any]) -> None:
    app = client.server.app
    first = openapi_document(app)
    assert openapi_document(app) is first
    again = await (await client.get(OPENAPI_PATH)).json()
    assert again == first


def test_apispec_is_not_imported_at_startup() -> None:
    code = (
        "import sys\n"
        "from lollms_server.app import create_app\n"
        "from lollms_server.config import parse_config\n"
        "create_app(parse_config({'bindings': {'e': {'type': 'echo'}}, "
        "'server': {'data_dir': sys.argv[1]}}))\n"
        "assert 'apispec' not in sys.modules, 'apispec imported at start-up'\n"
    )
    with tempfile.TemporaryDirectory() as data_dir:
        done = subprocess.run(
            [sys.executable, "-c", code, data_dir], capture_output=True, text=True, check=False
        )
    assert done.returncode == 0, done.stderr


# A synthetic app: the generator knows nothing of these routes in advance.


class FileUpload(fields.Field):
    """A field holding an UploadedFile, like the OpenAI face's upload fields."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        assert isinstance(value, UploadedFile)
        return value


class TranscribeForm(Schema):
    file = FileUpload(required=True)
    extra_files = fields.List(FileUpload())
    model = fields.String(required=True)
    stop = StringOrList()
    granularity = StringOrList(
        max_items=2, load_default=None, allow_none=True, validate=OneOf(["word", "seg"])
    )
    mask = FileUpload(load_default=None, allow_none=True)


class SpeechBody(Schema):
    input = fields.String(required=True)


class ModelSchema(Schema):
    id = fields.String()


class OtherError(Schema):
    """Same component name as the lollms ErrorSchema would get, from another module."""

    code = fields.Integer()


OtherError.__name__ = "ErrorSchema"


def synthetic_app() -> web.Application:
    routes = web.RouteTableDef()

    @routes.post("/v1/audio/transcriptions")
    @endpoint("Transcribe", tag="openai", form=TranscribeForm, response=ModelSchema)
    async def transcribe(request: web.Request, form: dict[str, Any]) -> web.Response:
        raise NotImplementedError

    @routes.post("/v1/audio/speech")
    @endpoint("Speak", tag="openai", body=SpeechBody, binary_response="audio/mpeg")
    async def speech(request: web.Request, body: dict[str, Any]) -> web.Response:
        raise NotImplementedError

    @routes.get("/v1/models/{model_id:.+}")
    @endpoint("One model", tag="openai", response=OtherError)
    async def model(request: web.Request) -> web.Response:
        raise NotImplementedError

    @routes.get("/-/plugin/{a}/x/{b:[0-9]+}")
    @endpoint("A plugin route", tag="plugin")
    async def plugin_route(request: web.Request) -> web.Response:
        raise NotImplementedError

    @routes.get("/undocumented")
    async def undocumented(request: web.Request) -> web.Response:
        raise NotImplementedError

    app = web.Application()
    app.router.add_routes(routes)
    return app


def test_generator_is_generic() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. apispec's "Multiple schemas resolved to the name"
        document = build_spec(synthetic_app())
    validate(document)
    paths = document["paths"]
    assert set(paths) == {
        "/v1/audio/transcriptions",
        "/v1/audio/speech",
        "/v1/models/{model_id}",
        "/-/plugin/{a}/x/{b}",
    }
    assert [p["name"] for p in paths["/-/plugin/{a}/x/{b}"]["parameters"]] == ["a", "b"]
    assert paths["/v1/models/{model_id}"]["parameters"][0]["name"] == "model_id"

    form = paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    assert list(form) == ["multipart/form-data"]
    schema = resolve(document, form["multipart/form-data"]["schema"])
    assert schema["properties"]["file"] == {"type": "string", "format": "binary"}
    assert schema["properties"]["extra_files"]["items"] == {"type": "string", "format": "binary"}
    assert schema["properties"]["model"]["type"] == "string"
    assert set(schema["required"]) == {"file", "model"}
    assert schema["properties"]["mask"]["type"] == ["string", "null"]
    word = {"type": "string", "enum": ["word", "seg"]}
    assert schema["properties"]["granularity"]["oneOf"] == [
        word,
        {"type": "array", "items": word, "maxItems": 2},
        {"type": "null"},
    ]
    assert "enum" not in schema["properties"]["granularity"]

    speech = paths["/v1/audio/speech"]["post"]
    assert "application/json" in speech["requestBody"]["content"]
    assert speech["responses"]["200"]["content"] == {
        "audio/mpeg": {"schema": {"type": "string", "format": "binary"}}
    }
    error = resolve(document, speech["responses"]["4XX"])
    openai_error = resolve(document, error["content"]["application/json"]["schema"])
    assert set(openai_error["properties"]["error"]["properties"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    # two schema classes that would both be called "Error" get distinct component names
    model_ok = paths["/v1/models/{model_id}"]["get"]["responses"]["200"]["content"]
    ref = model_ok["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/test_openapi.Error"
    assert "code" in resolve(document, model_ok["application/json"]["schema"])["properties"]
    assert {t["name"] for t in document["tags"]} == {"openai", "plugin"}
