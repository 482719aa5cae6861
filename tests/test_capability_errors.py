"""An operation the binding lacks is 501 on every face (one check: `registry.require`);
a malformed request stays 400; nothing asked of a binding is dropped silently."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.bindings import Binding
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
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
