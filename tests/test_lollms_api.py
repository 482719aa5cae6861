"""Every /api/v1 endpoint through the echo binding (and a recording subclass of it)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig
from marshmallow import fields

from lollms_server import __version__
from lollms_server.bindings import Binding, Chunk, GenerationRequest, mask_secrets
from lollms_server.builtin.echo import EchoBinding, EchoSettings
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import Plugins, load_plugins

Client = TestClient[Any, Any]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECRET = "sk-very-secret-value-123"


def text(data: str, role: str = "user_prompt") -> dict[str, Any]:
    return {"type": "text", "role": role, "data": data}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def generate(client: Client, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/generate", json=body)
    payload: dict[str, Any] = await response.json()
    return response.status, payload


async def get_json(client: Client, path: str, status: int = 200) -> dict[str, Any]:
    response = await client.get(path)
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


def assert_error(body: dict[str, Any], type_: str, **expected: Any) -> dict[str, Any]:
    error: dict[str, Any] = body["error"]
    assert error["type"] == type_, body
    assert isinstance(error["message"], str) and error["message"]
    for key, value in expected.items():
        assert error.get(key) == value, (key, body)
    return error


async def sse_events(response: ClientResponse) -> list[dict[str, Any]]:
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    raw = (await response.read()).decode()
    events = []
    for block in raw.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(json.loads(block.removeprefix("data: ")))
    return events


# -- a recording binding, registered as an in-process plugin ---------------------------------


class RecordingSettings(EchoSettings):
    api_key = fields.String(load_default=None, allow_none=True)
    base_url = fields.String(load_default="http://localhost:1")


class RecordingBinding(EchoBinding):
    """Echo that remembers every request and notices when its stream is closed early."""

    name = "rec"
    title = "Recording echo"
    ConfigSchema = RecordingSettings
    requests: list[GenerationRequest] = []  # reset by the `plugins` fixture
    started: asyncio.Event
    closed: asyncio.Event
    finished_normally: bool = False

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        RecordingBinding.requests.append(request)
        RecordingBinding.started.set()
        try:
            async for chunk in super().stream(request):
                yield chunk
            RecordingBinding.finished_normally = True
        finally:
            RecordingBinding.closed.set()


class RecordingPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [RecordingBinding]


class BrokenPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        raise RuntimeError("broken on purpose")


@pytest.fixture
def plugins() -> Plugins:
    RecordingBinding.requests = []
    RecordingBinding.started = asyncio.Event()
    RecordingBinding.closed = asyncio.Event()
    RecordingBinding.finished_normally = False
    return load_plugins(extra={"rec": RecordingPlugin(), "broken": BrokenPlugin()})


@pytest.fixture
async def rec_client(make_client: MakeClient, make_config: MakeConfig, plugins: Plugins) -> Client:
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo", "delay_ms": 20},
                "rec": {"type": "rec", "default_model": "echo", "delay_ms": 50, "api_key": SECRET},
                "sleepy": {"type": "echo", "default_model": "echo", "down": True},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    write_personalities(config.personalities_dir)
    return await make_client(config, plugins=plugins)


def write_personalities(root: Path) -> None:
    folder = root / "pirate"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        """\
name: pirate
author: lollms
version: 1.2
category: fun
language: english
tags: [fun, roleplay]
personality_description: Talks like a pirate.
personality_conditioning: "You are a pirate. Answer like one."
model_temperature: 0.4
model_n_predicts: 123
model_top_k: 7
model_top_p: 0.8
model_repeat_penalty: 1.3
""",
        encoding="utf-8",
    )
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("name: [unclosed\n  : :", encoding="utf-8")
    nameless = root / "nameless"
    nameless.mkdir()
    (nameless / "config.yaml").write_text("author: someone\n", encoding="utf-8")


# -- health and listings ---------------------------------------------------------------------


async def test_health(client: Client) -> None:
    body = await get_json(client, "/api/v1/health")
    assert body == {
        "status": "ok",
        "version": __version__,
        "api_key_required": False,
        "plugin_errors": {},
    }


async def test_health_reports_broken_plugin(rec_client: Client) -> None:
    body = await get_json(rec_client, "/api/v1/health")
    assert body["status"] == "ok"
    assert "broken on purpose" in body["plugin_errors"]["broken"]


async def test_list_bindings_masks_secrets(rec_client: Client) -> None:
    response = await rec_client.get("/api/v1/list_bindings")
    raw = await response.text()
    assert response.status == 200
    assert SECRET not in raw
    body = json.loads(raw)
    echo_type = body["binding_types"]["echo"]
    assert echo_type["plugin"] == "echo"
    assert "ttt" in echo_type["capabilities"] and "tts" in echo_type["capabilities"]
    assert echo_type["settings"] == [
        "delay_ms",
        "down",
        "load_delay_ms",
        "loaded_memory_mb",
        "model_memory_mb",
    ]
    assert body["binding_types"]["rec"]["plugin"] == "rec"
    instances = body["binding_instances"]
    assert set(instances) == {"echo", "rec", "sleepy"}
    settings = {
        "delay_ms": 20,
        "down": False,
        "load_delay_ms": 0,
        "loaded_memory_mb": None,
        "model_memory_mb": 0.0,
    }
    assert instances["echo"] == {
        **settings,  # upstream puts the instance's settings at the top
        "type": "echo",
        "binding_instance_name": "echo",
        "default_model": "echo",
        "settings": settings,
    }
    assert instances["rec"]["api_key"] == "***"
    assert instances["rec"]["settings"]["api_key"] == "***"
    assert instances["rec"]["settings"]["base_url"] == "http://localhost:1"
    assert "broken" in body["plugin_errors"]


def test_mask_secrets() -> None:
    masked = mask_secrets(
        {
            "api_key": "a",
            "Auth_Token": "b",
            "client_secret": "c",
            "password": "d",
            "api_key_env": "OPENAI_API_KEY",
            "empty_key": "",
            "host": "localhost",
            "nested": {"token": "e", "port": 1},
        },
        frozenset({"api_key"}),
    )
    assert masked == {
        "api_key": "***",
        "Auth_Token": "***",
        "client_secret": "***",
        "password": "***",
        "api_key_env": "OPENAI_API_KEY",  # the name of an env var is not a secret
        "empty_key": "",
        "host": "localhost",
        "nested": {"token": "***", "port": 1},
    }


async def test_list_active_bindings_health(rec_client: Client) -> None:
    body = (await get_json(rec_client, "/api/v1/list_active_bindings"))["bindings"]
    assert set(body) == {"echo", "rec", "sleepy"}
    assert body["echo"]["health"]["state"] == "up"
    assert body["echo"]["type"] == "echo"
    assert "stream" in body["echo"]["capabilities"]
    assert body["sleepy"]["health"] == {
        "state": "down",
        "detail": "configured down",
        "latency_ms": 0.0,
    }


async def test_list_available_models(rec_client: Client) -> None:
    body = await get_json(rec_client, "/api/v1/list_available_models/echo")
    assert body["instance"] == "echo"
    assert [m["name"] for m in body["models"]] == ["echo", "think", "slow", "fail"]
    first = body["models"][0]
    assert first["id"] == "echo/echo"
    assert first["binding_instance"] == "echo"
    assert first["context_length"] == 4096
    assert "tti" in first["capabilities"]

    missing = await get_json(rec_client, "/api/v1/list_available_models/nope", 404)
    assert_error(missing, "not_found")
    assert "echo" in missing["error"]["message"]  # lists the instances that exist

    down = await get_json(rec_client, "/api/v1/list_available_models/sleepy", 503)
    assert_error(down, "backend_unavailable", binding="sleepy")


async def test_list_models_lists_failures_apart(rec_client: Client) -> None:
    body = await get_json(rec_client, "/api/v1/list_models?format=lollms-server")
    assert set(body["models"]) == {"echo", "rec"}
    assert [m["id"] for m in body["models"]["rec"]][:1] == ["rec/echo"]
    names = await get_json(rec_client, "/api/v1/list_models")  # upstream: names only
    assert names["models"]["rec"][:1] == ["echo"] and names["errors"] == body["errors"]
    assert set(body["errors"]) == {"sleepy"}
    assert body["errors"]["sleepy"]["type"] == "backend_unavailable"
    assert body["errors"]["sleepy"]["binding"] == "sleepy"


async def test_get_model_info(client: Client) -> None:
    body = await get_json(client, "/api/v1/get_model_info/echo?model_name=think")
    assert body["name"] == "think" and body["id"] == "echo/think"

    default = await get_json(client, "/api/v1/get_model_info/echo")  # the default model
    assert default["model_name"] == "echo" and default["binding_instance_name"] == "echo"

    empty = await get_json(client, "/api/v1/get_model_info/echo?model_name=", 422)
    assert_error(empty, "validation_error", param="model_name")

    unknown = await get_json(client, "/api/v1/get_model_info/echo?model_name=gpt-9", 404)
    assert_error(unknown, "not_found", param="model_name", binding="echo")

    no_instance = await get_json(client, "/api/v1/get_model_info/nope?model_name=echo", 404)
    assert_error(no_instance, "not_found")


async def test_list_personalities(rec_client: Client) -> None:
    body = await get_json(rec_client, "/api/v1/list_personalities")
    shipped = {"concise_assistant", "prompt_artist"}  # the examples, offered by default
    assert set(body["personalities"]) == {"pirate"} | shipped
    pirate = body["personalities"]["pirate"]
    assert pirate["author"] == "lollms"
    assert pirate["version"] == "1.2"
    assert pirate["category"] == "fun"
    assert pirate["language"] == "english"
    assert pirate["tags"] == ["fun", "roleplay"]
    assert pirate["description"] == "Talks like a pirate."
    assert pirate["sampling"] == {
        "temperature": 0.4,
        "max_tokens": 123,
        "top_k": 7,
        "top_p": 0.8,
        "repeat_penalty": 1.3,
    }
    problems = body["problems"]
    assert len(problems) == 2
    assert any("broken" in p for p in problems)
    assert any("nameless" in p and "name" in p for p in problems)


async def test_list_functions_and_default_bindings(client: Client) -> None:
    assert await get_json(client, "/api/v1/list_functions") == {"functions": [], "problems": []}
    ours = await get_json(client, "/api/v1/list_functions?format=lollms-server")
    assert ours == {"functions": {}, "problems": []}
    body = await get_json(client, "/api/v1/get_default_bindings?format=lollms-server")
    assert set(body["defaults"]) == set(ECHO_DEFAULTS)
    assert body["defaults"]["tts"] == {"binding_instance": "echo", "model_name": "echo"}
    flat = (await get_json(client, "/api/v1/get_default_bindings"))["defaults"]
    assert flat["tts_binding"] == "echo" and flat["tts_model"] == "echo"


# -- generate --------------------------------------------------------------------------------


async def test_generate_text(client: Client) -> None:
    response = await client.post("/api/v1/generate", json={"input_data": [text("hello big world")]})
    body = await response.json()
    assert response.status == 200, body
    assert response.headers["X-Request-Id"] == body["request_id"]
    assert body["personality"] is None
    assert body["binding_instance"] == "echo" and body["model_name"] == "echo"
    assert body["output"] == [
        {
            "type": "text",
            "data": "hello big world",
            "mime_type": "text/plain",
            "thoughts": None,
            "metadata": {},
        }
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert body["finish_reason"] == "stop"
    assert body["execution_time"] >= 0


async def test_generate_max_tokens_and_think(client: Client) -> None:
    status, body = await generate(
        client, input_data=[text("one two three four")], parameters={"max_tokens": 2}
    )
    assert status == 200, body
    assert body["output"][0]["data"] == "one two"
    assert body["finish_reason"] == "length"

    status, body = await generate(client, input_data=[text("hi")], parameters={"n": 2})
    assert status == 422 and body["error"]["param"] == "parameters", body
    assert "one answer" in body["error"]["message"]

    status, body = await generate(client, input_data=[text("hi there")], model_name="think")
    assert status == 200, body
    assert body["output"][0]["data"] == "hi there"
    assert body["output"][0]["thoughts"] == "The user said: hi there"


async def test_generate_with_personality_reaches_binding(rec_client: Client) -> None:
    status, body = await generate(
        rec_client,
        input_data=[text("be brief", "system_context"), text("ahoy")],
        personality="pirate",
        binding_name="rec",
        parameters={"temperature": 1.5},
    )
    assert status == 200, body
    assert body["personality"] == "pirate"
    assert body["binding_instance"] == "rec"
    [request] = RecordingBinding.requests
    assert request.messages[0].role == "system"
    assert request.messages[0].content == "You are a pirate. Answer like one.\n\nbe brief"
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.parameters["temperature"] == 1.5  # the client's value wins
    assert request.parameters["max_tokens"] == 123  # the personality fills the rest
    assert request.parameters["top_k"] == 7
    assert request.parameters["repeat_penalty"] == 1.3


async def test_generate_unknown_personality_and_function(client: Client) -> None:
    status, body = await generate(client, input_data=[text("x")], personality="nobody")
    assert status == 404
    assert_error(body, "not_found", param="personality")
    status, body = await generate(client, input_data=[text("x")], functions=["nothing"])
    assert status == 404
    assert_error(body, "not_found", param="functions")


async def test_generate_unknown_instance_and_model(client: Client) -> None:
    status, body = await generate(client, input_data=[text("x")], binding_name="nope")
    assert status == 404
    assert_error(body, "not_found", param="binding_name")
    status, body = await generate(client, input_data=[text("x")], model_name="gpt-9")
    assert status == 404
    assert_error(body, "model_not_found", binding="echo")


async def test_chat_history_in_order(rec_client: Client) -> None:
    history = [
        text("first question", "user"),
        text("first answer", "assistant"),
        text("second question", "user"),
        text("second answer", "assistant_response"),
        text("third question", "user_prompt"),
    ]
    status, body = await generate(rec_client, input_data=history, binding_name="rec")
    assert status == 200, body
    assert body["output"][0]["data"] == "third question"  # echo answers the last user turn
    [request] = RecordingBinding.requests
    assert [(m.role, m.content) for m in request.messages] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
        ("assistant", "second answer"),
        ("user", "third question"),
    ]


async def test_tti_and_ttv(client: Client) -> None:
    status, body = await generate(
        client,
        input_data=[text("a red boat")],
        generation_type="tti",
        parameters={"width": 16, "height": 12, "seed": 5},
    )
    assert status == 200, body
    [image] = body["output"]
    assert image["type"] == "image" and image["mime_type"] == "image/png"
    png = base64.b64decode(image["data"])
    assert png.startswith(PNG_MAGIC)
    assert struct.unpack(">II", png[16:24]) == (16, 12)
    assert image["metadata"] == {"seed": 5}

    status, body = await generate(client, input_data=[text("a boat")], generation_type="ttv")
    assert status == 200, body
    [video] = body["output"]
    assert video["type"] == "video" and video["mime_type"] == "image/apng"
    apng = base64.b64decode(video["data"])
    assert apng.startswith(PNG_MAGIC) and b"acTL" in apng and b"fcTL" in apng


async def test_i2i(client: Client) -> None:
    status, body = await generate(client, input_data=[text("x")], generation_type="tti")
    source = body["output"][0]["data"]
    status, body = await generate(
        client,
        input_data=[text("make it blue"), {"type": "image", "role": "input_image", "data": source}],
        generation_type="i2i",
    )
    assert status == 200, body
    assert base64.b64decode(body["output"][0]["data"]).startswith(PNG_MAGIC)
    assert body["output"][0]["data"] != source

    status, body = await generate(client, input_data=[text("no image")], generation_type="i2i")
    assert status == 400
    assert_error(body, "invalid_request", binding="echo")

    status, body = await generate(
        client,
        input_data=[text("x"), {"type": "image", "data": "not base64!!"}],
        generation_type="i2i",
    )
    assert status == 400
    assert_error(body, "invalid_request", param="input_data[1].data")


async def test_tts_stt_round_trip_and_audio(client: Client) -> None:
    status, body = await generate(
        client, input_data=[text("Hello, World 42")], generation_type="tts"
    )
    assert status == 200, body
    [speech] = body["output"]
    assert speech["type"] == "audio" and speech["mime_type"] == "audio/wav"
    wav = base64.b64decode(speech["data"])
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"

    status, body = await generate(
        client,
        input_data=[{"type": "audio", "role": "input_audio", "data": speech["data"]}],
        generation_type="stt",
    )
    assert status == 200, body
    assert body["output"][0]["type"] == "text"
    assert body["output"][0]["data"] == "Hello, World 42"

    data_url = "data:audio/wav;base64," + speech["data"]
    status, body = await generate(
        client,
        input_data=[{"type": "audio", "role": "input_audio", "data": data_url}],
        generation_type="audio2audio",
    )
    assert status == 200, body
    reversed_wav = base64.b64decode(body["output"][0]["data"])
    assert reversed_wav[:4] == b"RIFF" and reversed_wav != wav

    status, body = await generate(client, input_data=[text("la la")], generation_type="ttm")
    assert status == 200, body
    assert base64.b64decode(body["output"][0]["data"])[8:12] == b"WAVE"

    status, body = await generate(
        client,
        input_data=[{"type": "audio", "role": "input_audio", "data": b64(b"not a wav file")}],
        generation_type="stt",
    )
    assert status == 415
    assert_error(body, "unsupported_media_type", binding="echo")


async def test_fail_and_timeout(
    client: Client, make_client: MakeClient, make_config: MakeConfig
) -> None:
    status, body = await generate(client, input_data=[text("a b c")], model_name="fail")
    assert status == 503
    assert_error(body, "backend_unavailable", binding="echo")
    status, body = await generate(
        client, input_data=[text("a")], model_name="fail", generation_type="tti"
    )
    assert status == 503
    assert_error(body, "backend_unavailable", binding="echo")

    slow_client = await make_client(make_config(request_timeout_s=0.1))
    status, body = await generate(
        slow_client, input_data=[text("a b c d e f g h")], model_name="slow"
    )
    assert status == 504
    assert_error(body, "backend_timeout", binding="echo")


# -- streaming -------------------------------------------------------------------------------


async def test_stream_events(client: Client) -> None:
    response = await client.post(
        "/api/v1/generate", json={"input_data": [text("one two three")], "stream": True}
    )
    events = await sse_events(response)
    assert events[0]["type"] == "info"
    assert events[0]["metadata"]["binding"] == "echo"
    request_id = events[0]["metadata"]["request_id"]
    assert response.headers["X-Request-Id"] == request_id
    chunks = [e for e in events if e["type"] == "chunk"]
    assert "".join(c["content"] for c in chunks) == "one two three"
    assert len(chunks) == 3
    assert [e["type"] for e in events].count("final") == 1
    final = events[-1]
    assert final["type"] == "final"
    assert final["content"][0]["data"] == "one two three"
    assert final["metadata"]["request_id"] == request_id
    assert final["metadata"]["usage"]["completion_tokens"] == 3


async def test_stream_think(client: Client) -> None:
    response = await client.post(
        "/api/v1/generate",
        json={"input_data": [text("deep thought")], "stream": True, "model_name": "think"},
    )
    events = await sse_events(response)
    chunks = [e for e in events if e["type"] == "chunk"]
    assert "".join(c["content"] for c in chunks) == "deep thought"
    assert "".join(c["thoughts"] or "" for c in chunks) == "The user said: deep thought"
    assert not any("<think>" in c["content"] for c in chunks)
    final = events[-1]["content"][0]
    assert final["data"] == "deep thought"
    assert final["thoughts"] == "The user said: deep thought"


async def test_stream_fail_sends_error_then_final(client: Client) -> None:
    response = await client.post(
        "/api/v1/generate",
        json={"input_data": [text("a b c")], "stream": True, "model_name": "fail"},
    )
    events = await sse_events(response)
    assert [e["type"] for e in events] == ["info", "chunk", "error", "final"]
    error = events[2]["metadata"]["error"]
    assert error["type"] == "backend_unavailable"
    assert error["binding"] == "echo"
    assert events[3]["metadata"]["status"] == "error"


async def test_stream_media(client: Client) -> None:
    response = await client.post(
        "/api/v1/generate",
        json={"input_data": [text("x")], "stream": True, "generation_type": "tti"},
    )
    events = await sse_events(response)
    assert events[-1]["type"] == "final"
    [image] = events[-1]["content"]
    assert image["type"] == "image"
    assert base64.b64decode(image["data"]).startswith(PNG_MAGIC)


async def test_client_disconnect_cancels_binding_stream(rec_client: Client) -> None:
    prompt = " ".join(f"w{i}" for i in range(200))  # 200 tokens x 50 ms: 10 s if not cancelled
    response = await rec_client.post(
        "/api/v1/generate",
        json={
            "input_data": [text(prompt)],
            "stream": True,
            "binding_name": "rec",
            "model_name": "slow",
        },
    )
    assert response.status == 200
    first = await response.content.readline()
    assert first.startswith(b"data: ")
    await asyncio.wait_for(RecordingBinding.started.wait(), 2)
    assert not RecordingBinding.closed.is_set()
    response.close()  # drop the connection mid-stream
    await asyncio.wait_for(RecordingBinding.closed.wait(), 2)
    assert not RecordingBinding.finished_normally


# -- tokenizer -------------------------------------------------------------------------------


async def test_tokenize_round_trip(client: Client) -> None:
    sample = "héllo wörld ✓"
    response = await client.post("/api/v1/tokenize", json={"text": sample})
    body = await response.json()
    assert response.status == 200, body
    assert body["tokens"] == list(sample.encode())
    assert body["count"] == len(sample.encode())
    assert body["model"] == "echo/echo"

    response = await client.post("/api/v1/detokenize", json={"tokens": body["tokens"]})
    assert (await response.json()) == {"text": sample, "model": "echo/echo"}

    response = await client.post(
        "/api/v1/count_tokens", json={"text": sample, "binding_name": "echo", "model_name": "think"}
    )
    assert (await response.json()) == {"count": len(sample.encode()), "model": "echo/think"}


async def test_tokenizer_errors(client: Client) -> None:
    response = await client.post("/api/v1/detokenize", json={"tokens": [72, 300]})
    assert response.status == 400
    assert_error(await response.json(), "invalid_request", param="tokens", binding="echo")
    response = await client.post("/api/v1/detokenize", json={"tokens": ["a"]})
    assert response.status == 422
    assert_error(await response.json(), "validation_error", param="tokens")
    response = await client.post("/api/v1/tokenize", json={"text": "x", "binding_name": "nope"})
    assert response.status == 404
    response = await client.post("/api/v1/tokenize", json={})
    assert response.status == 422
    assert_error(await response.json(), "validation_error", param="text")


async def test_model_name_may_name_the_instance(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """README: `<instance>/<model>` names a model from any face; on the lollms face without
    `binding_name`, `model_name="other/echo"` reaches instance `other` (it was looked up as a
    model of the default instance: 404)."""
    config = make_config(
        {
            "bindings": {"main": {"type": "echo"}, "other": {"type": "echo"}},
            "defaults": {"ttt": "main"},
        }
    )
    client = await make_client(config)
    body = {"input_data": [text("hi")], "model_name": "other/echo", "stream": True}
    response = await client.post("/api/v1/generate", json=body)
    assert response.status == 200, await response.text()
    assert '"binding_instance":"other"' in await response.text()
    tokens = await client.post(
        "/api/v1/count_tokens", json={"text": "hi", "model_name": "other/echo"}
    )
    assert tokens.status == 200 and (await tokens.json())["model"] == "other/echo"
