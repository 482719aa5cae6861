"""The OpenAI-compatible API over raw HTTP: shapes, streaming order, errors, media round trips."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse, FormData
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.bindings import CAPABILITIES, Binding, Chunk, GenerationRequest
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import KEYSTORE, REGISTRY
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHAT = "/v1/chat/completions"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def openai_error(response: ClientResponse, status: int) -> dict[str, Any]:
    """Assert an OpenAI-shaped error with `status` and return its inner object."""
    body = await response.json()
    assert response.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == OPENAI_ERROR_KEYS, body
    error: dict[str, Any] = body["error"]
    return error


async def sse(response: ClientResponse) -> list[Any]:
    """Every `data:` payload of a finished stream: JSON objects, and `[DONE]` as a string."""
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    events: list[Any] = []
    for block in (await response.read()).decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# -- a probe binding: echo with vision and tools, recording requests and stream closes ----------


class ProbeBinding(EchoBinding):
    """Echo that can see and call tools, and records what it was asked."""

    name = "probe"
    capabilities = CAPABILITIES

    def __init__(self, instance_name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(instance_name, config, **kwargs)
        self.requests: list[GenerationRequest] = []
        self.closed = asyncio.Event()
        self.tokens_sent = 0

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        try:
            if request.prompt.startswith("call:"):
                call = {
                    "id": "call_1",
                    "function": {"name": "weather", "arguments": {"city": "Oslo"}},
                }
                yield Chunk(tool_calls=(call,), finish_reason="tool_calls")
                return
            async for chunk in super().stream(request):
                self.tokens_sent += 1
                yield chunk
        finally:
            self.closed.set()


class TextOnly(EchoBinding):
    """Echo without embeddings, vision or tools."""

    name = "textonly"
    capabilities = frozenset({"ttt", "stream"})


class ProbePlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [ProbeBinding, TextOnly]


@pytest.fixture
async def probe_client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo", "delay_ms": 20},
                "probe": {"type": "probe", "default_model": "slow", "delay_ms": 30},
                "plain": {"type": "textonly", "default_model": "echo"},
                "sleepy": {"type": "echo", "down": True},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    pirate = config.personalities_dir / "pirate"
    pirate.mkdir(parents=True)
    (pirate / "config.yaml").write_text(
        "name: pirate\npersonality_conditioning: Talk like a pirate.\nmodel_temperature: 0.3\n"
    )
    return await make_client(config, plugins=load_plugins(extra={"probe": ProbePlugin()}))


def probe(client: Client) -> ProbeBinding:
    binding = client.server.app[REGISTRY].get("probe")
    assert isinstance(binding, ProbeBinding)
    return binding


# -- models ------------------------------------------------------------------------------------


async def test_models_list_skips_a_failing_instance(probe_client: Client) -> None:
    response = await probe_client.get("/v1/models")
    body = await response.json()
    assert response.status == 200 and body["object"] == "list"
    ids = [model["id"] for model in body["data"]]
    assert "echo/echo" in ids and "probe/think" in ids and "plain/fail" in ids
    assert not any(i.startswith("sleepy/") for i in ids)  # configured down: skipped, no 500
    first = body["data"][0]
    assert first["object"] == "model" and first["owned_by"] == first["id"].split("/")[0]
    assert isinstance(first["created"], int)


async def test_models_list_puts_the_default_text_model_first(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """lollms-client and others take the first model: it is the one text requests default to."""
    bindings = {
        "echo": {"type": "echo", "default_model": "echo"},
        "second": {"type": "echo", "default_model": "think"},
    }
    defaults = {**ECHO_DEFAULTS, "ttt": "second"}
    client = await make_client(make_config({"bindings": bindings, "defaults": defaults}))
    ids = [m["id"] for m in (await (await client.get("/v1/models")).json())["data"]]
    assert ids[0] == "second/think"
    assert {i.split("/")[0] for i in ids[: ids.index("echo/echo")]} == {"second"}
    assert len(ids) == len(set(ids)) and "echo/think" in ids


async def test_models_retrieve(client: Client) -> None:
    body = await (await client.get("/v1/models/echo/think")).json()
    assert body == {**body, "id": "echo/think", "object": "model", "owned_by": "echo"}
    for missing in ("echo/nope", "nope/echo", "echo"):
        error = await openai_error(await client.get(f"/v1/models/{missing}"), 404)
        assert error["type"] == "not_found_error" and error["code"] == "model_not_found"


# -- chat --------------------------------------------------------------------------------------


async def test_chat_completion_shape(client: Client) -> None:
    response = await client.post(CHAT, json={"model": "echo/echo", "messages": user("hello world")})
    body = await response.json()
    assert response.status == 200, body
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "echo/echo" and abs(body["created"] - time.time()) < 60
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "hello world"
    assert "reasoning_content" not in choice["message"]
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert response.headers["X-Request-Id"] in body["id"]


async def test_chat_bare_model_uses_defaults_and_thoughts_come_back(client: Client) -> None:
    body = await (await client.post(CHAT, json={"model": "think", "messages": user("hi")})).json()
    assert body["model"] == "echo/think"
    message = body["choices"][0]["message"]
    assert message["content"] == "hi"
    assert message["reasoning_content"] == "The user said: hi"


async def test_chat_max_tokens_and_finish_length(client: Client) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        body = {"model": "echo/echo", "messages": user("one two three"), field: 1}
        answer = await (await client.post(CHAT, json=body)).json()
        assert answer["choices"][0]["message"]["content"] == "one"
        assert answer["choices"][0]["finish_reason"] == "length"


async def test_chat_stream_order_and_done(client: Client) -> None:
    body = {"model": "echo/think", "messages": user("hello big world"), "stream": True}
    events = await sse(await client.post(CHAT, json=body))
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = events[:-1]
    assert all(
        c["object"] == "chat.completion.chunk" and c["model"] == "echo/think" for c in chunks
    )
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content", "") for d in deltas) == "hello big world"
    assert (
        "".join(d.get("reasoning_content", "") for d in deltas) == "The user said: hello big world"
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert all("usage" not in c for c in chunks)


async def test_chat_stream_include_usage(client: Client) -> None:
    body = {
        "model": "echo/echo",
        "messages": user("a b c"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = await sse(await client.post(CHAT, json=body))
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in events[:-2])


async def test_chat_backend_failure_non_stream_is_503(client: Client) -> None:
    response = await client.post(CHAT, json={"model": "echo/fail", "messages": user("a b")})
    error = await openai_error(response, 503)
    assert error["code"] == "backend_unavailable" and error["type"] == "server_error"
    assert "echo" in error["message"]


async def test_chat_backend_failure_mid_stream_is_an_error_event(client: Client) -> None:
    body = {"model": "echo/fail", "messages": user("a b c"), "stream": True}
    events = await sse(await client.post(CHAT, json=body))
    assert events[-1] == "[DONE]"
    assert set(events[-2]) == {"error"} and set(events[-2]["error"]) == OPENAI_ERROR_KEYS
    assert events[-2]["error"]["code"] == "backend_unavailable"
    assert events[1]["choices"][0]["delta"]["content"] == "a"


async def test_chat_unknown_model_is_404_even_when_streaming(client: Client) -> None:
    for stream in (False, True):
        body = {"model": "echo/nope", "messages": user("x"), "stream": stream}
        error = await openai_error(await client.post(CHAT, json=body), 404)
        assert error["param"] == "model" and "nope" in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"messages": user("x"), "bogus": 1}, "bogus", "Unknown field"),
        ({"messages": user("x"), "n": 2}, "n", "one choice"),
        ({"messages": user("x"), "temperature": 3}, "temperature", "temperature"),
        ({"messages": []}, "messages", "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages", "role"),
        ({"messages": [{"role": "user", "content": None}]}, "messages", "needs content"),
        ({"messages": user("x"), "modalities": ["text", "audio"]}, "modalities", "modalities"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                        ],
                    }
                ]
            },
            "messages",
            "never fetches",
        ),
    ],
)
async def test_chat_bad_requests_are_400(
    client: Client, body: dict[str, Any], param: str, words: str
) -> None:
    error = await openai_error(await client.post(CHAT, json=body), 400)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]


async def test_chat_accepts_every_documented_field(client: Client) -> None:
    body: dict[str, Any] = {
        "model": "echo/echo",
        "messages": user("fine"),
        "stream": False,
        "stream_options": None,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 1,
        "stop": ["zz"],
        "max_tokens": 50,
        "max_completion_tokens": 50,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "logit_bias": {"42": 1},
        "logprobs": False,
        "top_logprobs": 0,
        "seed": 7,
        "user": "u",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "response_format": {"type": "text"},
        "store": False,
        "metadata": {"k": "v"},
        "reasoning_effort": "low",
        "service_tier": "auto",
        "modalities": ["text"],
        "audio": None,
        "prediction": None,
        "web_search_options": {},
        "verbosity": "low",
        "prompt_cache_key": "k",
        "safety_identifier": "s",
        "prompt_cache_retention": "24h",
        "functions": None,
        "function_call": None,
    }
    body["messages"] = [
        {"role": "developer", "content": "be brief"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}], "refusal": None},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "user", "content": [{"type": "text", "text": "fine"}], "name": "ann"},
    ]
    response = await client.post(CHAT, json=body)
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "fine"


async def test_chat_parameters_roles_and_images_reach_the_binding(probe_client: Client) -> None:
    image = base64.b64encode(PNG_MAGIC + b"fake").decode()
    messages = [
        {"role": "developer", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            ],
        },
    ]
    body = {
        "model": "probe/echo",
        "messages": messages,
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 9,
        "max_completion_tokens": 7,
        "stop": "END",
        "seed": 3,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "top_k": 4,
    }
    response = await probe_client.post(CHAT, json=body)
    assert response.status == 200, await response.text()
    request = probe(probe_client).requests[-1]
    assert request.parameters == {
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 7,
        "stop": ["END"],
        "seed": 3,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "top_k": 4,
    }
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].content == "look"
    assert request.messages[1].images[0].data == PNG_MAGIC + b"fake"
    assert request.messages[1].images[0].mime_type == "image/png"


async def test_chat_images_need_a_vision_binding(client: Client) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
    body = {"model": "echo/echo", "messages": [{"role": "user", "content": [part]}]}
    error = await openai_error(await client.post(CHAT, json=body), 501)
    assert "vision" in error["message"]


async def test_chat_personality(probe_client: Client) -> None:
    body = {"model": "probe/echo", "messages": user("ahoy"), "personality": "pirate"}
    assert (await probe_client.post(CHAT, json=body)).status == 200
    request = probe(probe_client).requests[-1]
    assert request.messages[0].role == "system"
    assert request.messages[0].content == "Talk like a pirate."
    assert request.parameters["temperature"] == 0.3
    body["personality"] = "ninja"
    error = await openai_error(await probe_client.post(CHAT, json=body), 404)
    assert error["param"] == "personality"


async def test_chat_tool_calls(probe_client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    body = {"model": "probe/echo", "messages": user("call: weather"), "tools": tools}
    answer = await (await probe_client.post(CHAT, json=body)).json()
    assert probe(probe_client).requests[-1].parameters["tools"] == tools
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    events = await sse(await probe_client.post(CHAT, json={**body, "stream": True}))
    calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "weather"
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def _function(name: str, nested: bool) -> dict[str, Any]:
    inner = {"name": name, "parameters": {"type": "object", "properties": {}}}
    return {"type": "function", "function": inner} if nested else {"type": "function", **inner}


async def test_allowed_tools_narrow_the_tools_the_binding_gets(probe_client: Client) -> None:
    """OpenAI's `allowed_tools` tool_choice (pydantic-ai sends it when its tool_choice names some
    tools): the binding gets the tools it allows and its mode, on chat and on responses."""
    choice = {"mode": "required", "tools": [{"type": "function", "function": {"name": "clock"}}]}
    body = {
        "model": "probe/echo",
        "messages": user("hi"),
        "tools": [_function("weather", True), _function("clock", True)],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": choice},
    }
    response = await probe_client.post(CHAT, json=body)
    assert response.status == 200, await response.text()
    parameters = probe(probe_client).requests[-1].parameters
    assert parameters["tools"] == [_function("clock", True)]
    assert parameters["tool_choice"] == "required"
    allowed = {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "function", "name": "weather"}],
    }
    body = {
        "model": "probe/echo",
        "input": "hi",
        "tools": [_function("weather", False), _function("clock", False)],
        "tool_choice": allowed,
    }
    response = await probe_client.post("/v1/responses", json=body)
    assert response.status == 200, await response.text()
    assert (await response.json())["tool_choice"] == allowed
    parameters = probe(probe_client).requests[-1].parameters
    assert parameters["tools"] == [_function("weather", True)]
    assert parameters["tool_choice"] == "auto"


@pytest.mark.parametrize(
    "choice",
    [
        {"mode": "sometimes", "tools": [{"type": "function", "function": {"name": "clock"}}]},
        {"mode": "auto", "tools": []},
        {"mode": "auto", "tools": [{"type": "function", "function": {"name": "nope"}}]},
        {"mode": "auto", "tools": ["clock"]},
    ],
)
async def test_malformed_allowed_tools_are_400s(probe_client: Client, choice: Any) -> None:
    body = {
        "model": "probe/echo",
        "messages": user("hi"),
        "tools": [_function("clock", True)],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": choice},
    }
    error = await openai_error(await probe_client.post(CHAT, json=body), 400)
    assert error["param"] == "tool_choice" and "allowed_tools" in error["message"]


async def test_chat_tools_without_tool_support_are_501(probe_client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"model": "plain/echo", "messages": user("x"), "tools": tools, "tool_choice": "required"}
    error = await openai_error(await probe_client.post(CHAT, json=body), 501)
    assert error["param"] == "tools"
    body["tool_choice"] = "auto"  # offered to a model that cannot call them: refused, not dropped
    error = await openai_error(await probe_client.post(CHAT, json=body), 501)
    body["tool_choice"] = "none"  # told not to call any: the model answers in text
    answer = await (await probe_client.post(CHAT, json=body)).json()
    assert answer["choices"][0]["message"]["content"] == "x"


async def test_client_disconnect_closes_the_binding_stream(probe_client: Client) -> None:
    binding = probe(probe_client)
    prompt = " ".join(f"w{i}" for i in range(300))  # 300 tokens x 30 ms = 9 s if never closed
    body = {"model": "probe/slow", "messages": user(prompt), "stream": True}
    response = await probe_client.post(CHAT, json=body)
    assert response.status == 200
    assert (await response.content.readuntil(b"\n\n")).startswith(b"data: ")
    response.close()
    await asyncio.wait_for(binding.closed.wait(), timeout=3)
    assert binding.tokens_sent < 100


# -- legacy completions ------------------------------------------------------------------------


async def test_completions(client: Client) -> None:
    body = {"model": "echo/echo", "prompt": "hello there", "echo": True}
    answer = await (await client.post("/v1/completions", json=body)).json()
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["text"] == "hello therehello there"
    assert answer["usage"]["completion_tokens"] == 2
    body = {"model": "echo/echo", "prompt": ["a b"], "stream": True}
    events = await sse(await client.post("/v1/completions", json=body))
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "a b"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("prompt", "words"), [(["a", "b"], "one prompt"), ([1, 2, 3], "token-id"), ([[1]], "token-id")]
)
async def test_completions_bad_prompt_is_400(client: Client, prompt: Any, words: str) -> None:
    response = await client.post("/v1/completions", json={"prompt": prompt})
    error = await openai_error(response, 400)
    assert error["param"] == "prompt" and words in error["message"]


# -- embeddings --------------------------------------------------------------------------------


async def test_embeddings_float_and_base64(client: Client) -> None:
    body = {"model": "echo/echo", "input": ["alpha", "beta"]}
    floats = await (await client.post("/v1/embeddings", json=body)).json()
    assert floats["object"] == "list" and floats["model"] == "echo/echo"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    vectors = [d["embedding"] for d in floats["data"]]
    assert len(vectors[0]) == 16 and vectors[0] != vectors[1]
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-6)
    encoded = await (
        await client.post("/v1/embeddings", json={**body, "encoding_format": "base64"})
    ).json()
    raw = base64.b64decode(encoded["data"][1]["embedding"])
    decoded = struct.unpack("<16f", raw)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, vectors[1], strict=True))


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"input": "x", "dimensions": 3}, "dimensions", 400),
        ({"input": [[1, 2]]}, "input", 400),
        ({"input": ""}, "input", 400),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", 400),
        ({"input": "x", "model": "plain/echo"}, "model", 501),
    ],
)
async def test_embeddings_bad_requests(
    probe_client: Client, body: dict[str, Any], param: str, status: int
) -> None:
    error = await openai_error(await probe_client.post("/v1/embeddings", json=body), status)
    assert error["param"] == param


# -- images ------------------------------------------------------------------------------------


async def test_image_generation(client: Client) -> None:
    body = {"model": "echo/echo", "prompt": "a cat", "n": 2, "size": "24x12"}
    answer = await (await client.post("/v1/images/generations", json=body)).json()
    images = [base64.b64decode(item["b64_json"]) for item in answer["data"]]
    assert len(images) == 2 and images[0] != images[1]  # the second call gets a new seed
    assert all(png_size(image) == (24, 12) for image in images)
    body = {"prompt": "a cat", "response_format": "url", "size": "auto"}
    answer = await (await client.post("/v1/images/generations", json=body)).json()
    url = answer["data"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    assert png_size(base64.b64decode(url.partition(",")[2])) == (8, 8)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "size": "99999x99999"}, "size"),  # the lollms API's 8192 a side
        ({"prompt": "x", "size": "512x8193"}, "size"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"size": "8x8"}, "prompt"),
        ({"prompt": "x", "output_format": "exe"}, "output_format"),
        ({"prompt": "x", "output_compression": 101}, "output_compression"),
    ],
)
async def test_image_bad_requests(client: Client, body: dict[str, Any], param: str) -> None:
    error = await openai_error(await client.post("/v1/images/generations", json=body), 400)
    assert error["param"] == param


async def test_image_edit_multipart(client: Client) -> None:
    generated = await (await client.post("/v1/images/generations", json={"prompt": "p"})).json()
    source = base64.b64decode(generated["data"][0]["b64_json"])
    form = FormData()
    form.add_field("image", source, filename="in.png", content_type="image/png")
    form.add_field("mask", source, filename="mask.png", content_type="image/png")
    form.add_field("prompt", "make it blue")
    form.add_field("size", "16x16")
    answer = await (await client.post("/v1/images/edits", data=form)).json()
    assert png_size(base64.b64decode(answer["data"][0]["b64_json"])) == (16, 16)
    form = FormData(default_to_multipart=True)
    form.add_field("image", "not a file")
    form.add_field("prompt", "x")
    error = await openai_error(await client.post("/v1/images/edits", data=form), 400)
    assert error["param"] == "image"
    response = await client.post("/v1/images/edits", data={"prompt": "x"})  # urlencoded
    await openai_error(response, 415)


@pytest.mark.parametrize("part", ["image", "mask", "controlnet_image"])
async def test_image_edit_upload_that_is_no_image_is_a_415_naming_it(
    client: Client, part: str
) -> None:
    """As for the base64 routes: refused before any binding sees it (the diffusers binding said
    "cannot identify image file <_io.BytesIO object at 0x7fad...>", without a param)."""
    form = FormData()
    form.add_field("prompt", "x")
    if part != "image":
        form.add_field("image", PNG_MAGIC + b"\0" * 32, filename="a.png", content_type="image/png")
    form.add_field(part, b"not an image", filename="a.png", content_type="image/png")
    error = await openai_error(await client.post("/v1/images/edits", data=form), 415)
    assert error["param"] == part and "PNG, JPEG, GIF or WebP" in error["message"]


# -- audio -------------------------------------------------------------------------------------


async def speech(client: Client, text: str, **extra: Any) -> ClientResponse:
    body = {"model": "echo/echo", "input": text, "voice": "alloy", **extra}
    return await client.post("/v1/audio/speech", json=body)


def audio_form(data: bytes, **fields: str) -> FormData:
    form = FormData()
    form.add_field("file", data, filename="speech.wav", content_type="audio/wav")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


async def test_speech_formats(client: Client) -> None:
    response = await speech(client, "hi", response_format="wav")
    assert response.status == 200 and response.content_type == "audio/wav"
    wav = await response.read()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    # echo speaks at 16 kHz: raw samples would play 1.5 times too fast as OpenAI's 24 kHz pcm
    error = await openai_error(await speech(client, "hi", response_format="pcm"), 400)
    assert "24 kHz" in error["message"] and "16000 Hz" in error["message"], error
    error = await openai_error(await speech(client, "hi", response_format="mp3"), 400)
    assert error["param"] == "response_format" and "'wav'" in error["message"]
    error = await openai_error(await speech(client, "hi", response_format="ogg"), 400)
    assert error["param"] == "response_format"


async def test_speech_transcription_round_trip(client: Client) -> None:
    wav = await (await speech(client, "hello world")).read()
    response = await client.post("/v1/audio/transcriptions", data=audio_form(wav, model="echo"))
    usage = {"type": "duration", "seconds": pytest.approx(1.1)}  # OpenAI's for whisper-1
    assert await response.json() == {"text": "hello world", "model": "echo/echo", "usage": usage}
    form = audio_form(wav, response_format="text")
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.content_type == "text/plain" and await response.text() == "hello world"
    form = audio_form(wav, response_format="verbose_json", language="en")
    verbose = await (await client.post("/v1/audio/transcriptions", data=form)).json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "en"
    assert verbose["duration"] == pytest.approx(1.1) and verbose["text"] == "hello world"
    assert verbose["segments"][0]["end"] == pytest.approx(1.1)
    assert verbose["usage"] == usage
    srt = await (
        await client.post("/v1/audio/transcriptions", data=audio_form(wav, response_format="srt"))
    ).text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,100\nhello world")
    vtt = await (
        await client.post("/v1/audio/translations", data=audio_form(wav, response_format="vtt"))
    ).text()
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.100\nhello world")


async def test_transcription_bad_requests(client: Client) -> None:
    form = FormData(default_to_multipart=True)
    form.add_field("file", "just text")
    error = await openai_error(await client.post("/v1/audio/transcriptions", data=form), 400)
    assert error["param"] == "file"
    form = audio_form(b"RIFF", response_format="json", stream="true")
    error = await openai_error(await client.post("/v1/audio/transcriptions", data=form), 400)
    assert error["param"] == "stream"
    form = audio_form(b"RIFF", timestamp_granularities="hours")
    error = await openai_error(await client.post("/v1/audio/transcriptions", data=form), 400)
    assert error["param"] == "timestamp_granularities"
    # no binding here tells speakers apart: diarized_json is refused, not answered as verbose_json
    form = audio_form(b"RIFF", response_format="diarized_json")
    error = await openai_error(await client.post("/v1/audio/transcriptions", data=form), 400)
    assert error["param"] == "response_format" and "speaker" in error["message"]


async def test_a_bare_model_another_instance_has_says_how_to_name_it(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """A model name without its instance goes to the default instance; when that one has no
    such model, the 404 says how to reach another instance's (a new user's first stumble)."""
    bindings = {
        "echo": {"type": "echo", "default_model": "echo"},
        "other": {"type": "echo", "default_model": "echo"},
    }
    client = await make_client(make_config({"bindings": bindings, "defaults": ECHO_DEFAULTS}))
    messages = [{"role": "user", "content": "hi"}]
    bare = await client.post("/v1/chat/completions", json={"model": "nope", "messages": messages})
    error = await openai_error(bare, 404)
    assert (
        "default instance 'echo'" in error["message"] and "<instance>/<model>" in error["message"]
    )
    named = await client.post(
        "/v1/chat/completions", json={"model": "other/nope", "messages": messages}
    )
    assert "default instance" not in (await openai_error(named, 404))["message"]


async def test_a_default_model_missing_from_its_instance_names_the_config_key(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """A request that names no model gets the config's default; when that one does not exist,
    the 404 names the config key that chose it, not advice about naming models."""
    bindings = {"echo": {"type": "echo", "default_model": "typo"}}
    client = await make_client(make_config({"bindings": bindings, "defaults": ECHO_DEFAULTS}))
    messages = [{"role": "user", "content": "hi"}]
    for model in ("gpt-4o-mini", "echo"):  # a hard-coded client name, the instance alone
        answer = await client.post(
            "/v1/chat/completions", json={"model": model, "messages": messages}
        )
        message = (await openai_error(answer, 404))["message"]
        assert "[bindings.echo] default_model" in message, message
        assert "without its instance" not in message
    defaults = {**ECHO_DEFAULTS, "ttt": "echo/typo2"}
    bindings = {"echo": {"type": "echo", "default_model": "echo"}}
    client = await make_client(make_config({"bindings": bindings, "defaults": defaults}))
    answer = await client.post(
        "/api/v1/generate", json={"input_data": [{"type": "text", "data": "hi"}]}
    )
    assert answer.status == 404
    assert "[defaults] ttt" in (await answer.json())["error"]["message"]


async def test_route_aliases_are_listed_as_models(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """A `[routes]` alias is a model name on every face: /v1/models lists it (first when it is
    the text default) and retrieves it, /api/tags lists it, for callers who may use all of its
    targets only (a key is refused a route with a target it may not use)."""
    bindings = {"echo": {"type": "echo"}, "other": {"type": "echo"}}
    routes = {"chat": ["other/echo", "echo/echo"], "hidden": ["other/think"]}
    config = make_config(
        {"bindings": bindings, "routes": routes, "defaults": {**ECHO_DEFAULTS, "ttt": "chat"}}
    )
    client = await make_client(config)
    ids = [m["id"] for m in (await (await client.get("/v1/models")).json())["data"]]
    assert ids[0] == "chat" and "hidden" in ids and "echo/echo" in ids, ids
    one = await client.get("/v1/models/chat")
    assert one.status == 200 and (await one.json())["id"] == "chat"
    allowed = ["echo/echo", "other/echo"]  # every target of chat, none of hidden
    key, _ = await client.server.app[KEYSTORE].create("u", "user", allowed_models=allowed)
    headers = {"Host": "evil.example", "X-API-Key": key}
    seen = [
        m["id"] for m in (await (await client.get("/v1/models", headers=headers)).json())["data"]
    ]
    assert "chat" in seen and "hidden" not in seen, seen  # hidden: no target it may use
    assert (await client.get("/v1/models/hidden", headers=headers)).status == 404
    tags = (await (await client.get("/api/tags", headers=headers)).json())["models"]
    names = [t["name"] for t in tags]
    assert "chat:latest" in names and "hidden:latest" not in names, names  # the Ollama face too
    body = {"model": "chat:latest", "messages": [{"role": "user", "content": "hi"}]}
    answer = await client.post("/api/chat", json={**body, "stream": False}, headers=headers)
    assert answer.status == 200 and (await answer.json())["message"]["content"] == "hi"
