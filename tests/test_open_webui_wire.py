"""Requests exactly as Open WebUI 0.12 sends them (its routers' aiohttp calls), replayed here
because Open WebUI itself cannot be a test dependency (docs/compatibility.md, "Open WebUI")."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.bindings import GENERATION_TYPES
from lollms_server.keys import LIFECYCLE

Client = TestClient[Any, Any]


@pytest.fixture
async def server(make_client: Any, make_config: Any) -> Client:
    config = make_config(
        {
            "bindings": {"echo": {"type": "echo", "default_model": "echo"}},
            "defaults": dict.fromkeys(GENERATION_TYPES, "echo"),
        }
    )
    client: Client = await make_client(config)
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
