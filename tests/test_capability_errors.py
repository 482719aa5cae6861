"""An operation the binding lacks is 501 on every face (one check: `registry.require`);
a malformed request stays 400; nothing asked of a binding is dropped silently."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.bindings import Binding, ModelInfo
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import REGISTRY
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


class Plain(EchoBinding):
    """Text only: no tools, vision, embeddings or media."""

    name = "plain"
    capabilities = frozenset({"ttt", "stream"})


class PlainPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Plain]


@pytest.fixture
async def client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """`plain` (text only) next to `echo`."""
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo"},
                "plain": {"type": "plain", "default_model": "echo"},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    return await make_client(config, plugins=load_plugins(extra={"plain": PlainPlugin()}))


def text(prompt: str = "x", **extra: Any) -> list[dict[str, Any]]:
    """One user message."""
    return [{"role": "user", "content": prompt, **extra}]


CASES = [
    ("/api/v1/generate", {"binding_name": "plain", "generation_type": "tti",
                          "input_data": [{"type": "text", "data": "a cat"}]}, "tti"),
    ("/v1/chat/completions", {"model": "plain/echo", "messages": text(), "tools": TOOLS}, "tools"),
    ("/v1/chat/completions", {"model": "plain/echo", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]},
     "vision"),
    ("/v1/embeddings", {"model": "plain/echo", "input": "x"}, "embeddings"),
    ("/v1/images/generations", {"model": "plain/echo", "prompt": "a cat"}, "tti"),
    ("/api/chat", {"model": "plain/echo", "messages": text(), "tools": TOOLS, "stream": False},
     "tools"),
    ("/api/chat", {"model": "plain/echo", "messages": text(images=[PNG]), "stream": False},
     "vision"),
    ("/api/embed", {"model": "plain/echo", "input": "x"}, "embeddings"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "lacking"), CASES)
async def test_an_operation_the_binding_lacks_is_501(
    client: Client, path: str, body: dict[str, Any], lacking: str
) -> None:
    response = await client.post(path, json=body)
    answer = await response.json()
    assert response.status == 501, answer
    error = answer["error"]
    message = error if isinstance(error, str) else error["message"]
    assert lacking in message and "plain" in message, message


async def test_tools_on_a_capable_binding_still_pass_and_malformed_is_400(client: Client) -> None:
    body = {"model": "echo/echo", "messages": text(), "tools": TOOLS, "stream": False}
    assert (await client.post("/api/chat", json=body)).status == 200
    bad = {"model": "echo/echo", "messages": text(), "tools": "not a list", "stream": False}
    assert (await client.post("/api/chat", json=bad)).status == 400
    assert (await client.post("/v1/chat/completions", json=bad)).status == 400


class Listed(EchoBinding):
    """Echo whose listing says `think` does text only and `echo` nothing about capabilities."""

    name = "listed"

    async def list_models(self) -> list[ModelInfo]:
        """The echo models, `think` without embeddings, `echo` without any capabilities."""
        models = await super().list_models()
        shown = {"think": frozenset({"ttt", "stream"}), "echo": frozenset()}
        return [replace(m, capabilities=shown.get(m.name, m.capabilities)) for m in models]


class ListedPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Listed]


@pytest.mark.parametrize("path", ["/v1/embeddings", "/api/embed", "/lollms_embed"])
async def test_embeddings_of_a_model_listed_without_them_are_refused_before_its_load(
    make_client: MakeClient, make_config: MakeConfig, path: str
) -> None:
    """A binding that can embed, a model it lists without `embeddings`: 400 naming the model,
    and the model is not loaded to be refused; a model listed without any capabilities is the
    binding's to judge (it embeds)."""
    config = make_config(
        {"bindings": {"listed": {"type": "listed"}}, "defaults": {"ttt": "listed/think"}}
    )
    client = await make_client(config, plugins=load_plugins(extra={"listed": ListedPlugin()}))
    binding = client.app[REGISTRY].instances["listed"]
    assert isinstance(binding, Listed)
    body = {"text": "x"} if path == "/lollms_embed" else {"model": "listed/think", "input": "x"}
    response = await client.post(path, json=body)
    answer = await response.json()
    assert response.status == 400, answer
    assert "listed/think has no embeddings capability" in json.dumps(answer), answer
    assert binding.load_count == 0 and not binding.loaded
    if path != "/lollms_embed":
        response = await client.post(path, json={"model": "listed/echo", "input": "x"})
        assert response.status == 200, await response.text()
        assert binding.loaded == {"echo"}
