"""Requests exactly as Open WebUI 0.12 sends them (its routers' aiohttp calls), replayed here
because Open WebUI itself cannot be a test dependency (docs/compatibility.md, "Open WebUI")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.bindings import GENERATION_TYPES, Binding, GenerationRequest, Result
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import LIFECYCLE, REGISTRY
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]


class RecordingEcho(EchoBinding):
    """Echo that keeps the requests it answered whole."""

    name = "recording-echo"

    def __init__(self, instance_name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(instance_name, config, **kwargs)
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> Result:
        """Echo's answer, recorded."""
        self.requests.append(request)
        return await super().generate(request)


class RecordingPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [RecordingEcho]


@pytest.fixture
async def server(make_client: Any, make_config: Any) -> Client:
    config = make_config(
        {
            "bindings": {"echo": {"type": "recording-echo", "default_model": "echo"}},
            "defaults": dict.fromkeys(GENERATION_TYPES, "echo"),
        }
    )
    plugins = load_plugins({"recording-test": RecordingPlugin()})
    client: Client = await make_client(config, plugins=plugins)
    return client


async def test_ollama_proxy_v1_routes_take_the_tagged_names_of_api_tags(server: Client) -> None:
    """Open WebUI's `/ollama/v1/...` proxies send the `/api/tags` name (`echo/echo:latest`)
    to `<ollama url>/v1/...`, as Ollama's own OpenAI-compatible routes accept it."""
    tags = await (await server.get("/api/tags")).json()
    name = next(m["model"] for m in tags["models"] if m["model"].startswith("echo/echo"))
    assert name == "echo/echo:latest"
    chat = {"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    response = await server.post("/v1/chat/completions", json=chat)
    assert response.status == 200, await response.text()
    assert (await response.json())["choices"][0]["message"]["content"]
    response = await server.post("/v1/completions", json={"model": name, "prompt": "hi"})
    assert response.status == 200, await response.text()
    response = await server.post("/v1/embeddings", json={"model": name, "input": "hi"})
    assert response.status == 200, await response.text()
    assert len((await response.json())["data"]) == 1
    response = await server.post("/v1/chat/completions", json={**chat, "model": "echo/nope:latest"})
    assert response.status == 404  # an unknown model stays unknown with the tag


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_keep_alive_as_open_webui_sends_it_on_v1(server: Client, path: str) -> None:
    """Open WebUI's "Keep Alive" advanced param is an Ollama duration ("10m") and goes, top
    level, to OpenAI connections too (chat, and the "Responses" connection type)."""
    body: dict[str, Any] = {"model": "echo/echo", "stream": False, "keep_alive": "10m"}
    if path == "/v1/responses":
        body["input"] = "hi"
    else:
        body["messages"] = [{"role": "user", "content": "hi"}]
    response = await server.post(path, json=body)
    assert response.status == 200, await response.text()
    lifecycle = server.server.app[LIFECYCLE]
    left = lifecycle.unloads_at(lifecycle.loaded["echo", "echo"])
    assert left is not None and 590 < left - time.monotonic() <= 600
    for value, status in ((-1, 200), ("-1", 200), (30, 200), ("5 minutes", 400)):
        response = await server.post(path, json={**body, "keep_alive": value})
        assert response.status == status, (value, await response.text())


async def test_ollama_tool_result_keeps_the_call_id_open_webui_sends(server: Client) -> None:
    """Open WebUI's follow-up after running a tool (its `convert_payload_openai_to_ollama`):
    the tool message names the call with `tool_call_id`, which a binding forwarding to an
    OpenAI-compatible upstream must pass on (OpenAI refuses a tool message without it)."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    call = {"index": 0, "id": "call_0_0", "function": {"name": "get_weather", "arguments": {}}}
    messages = [
        {"role": "user", "content": "CALL get_weather {}"},
        {"role": "assistant", "tool_calls": [call], "content": ""},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_0_0"},
    ]
    body = {"model": "echo/echo:latest", "messages": messages, "stream": False, "tools": tools}
    response = await server.post("/api/chat", json=body)
    assert response.status == 200, await response.text()
    assert (await response.json())["message"]["content"] == "Function results: sunny"
    binding = server.server.app[REGISTRY].get("echo")
    assert isinstance(binding, RecordingEcho)
    assistant, tool = binding.requests[-1].messages[1:]
    assert assistant.tool_calls[0].id == tool.tool_call_id == "call_0_0"
    body["messages"][2] = {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    response = await server.post("/api/chat", json=body)  # Ollama's own shape still works
    assert response.status == 200  # and is linked to the call of that name
    assert binding.requests[-1].messages[2].tool_call_id == "call_0_0"
