"""A provider that rate-limits us (its 429) hands a route's request to the next target, as a
5xx does: the client's key was not limited, the provider was."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lollms_openai import OpenAIBinding

from lollms_server.app import create_app
from lollms_server.config import parse_config
from lollms_server.keys import BREAKERS
from lollms_server.plugins import load_plugins
from lollms_server.testing import within
from lollms_server.testing.server import KitPlugin

from .conftest import Remote

TIMEOUT = 60.0


async def limited_upstream() -> tuple[web.Application, list[str]]:
    """An OpenAI-compatible server that lists one model and answers every chat with 429."""
    calls: list[str] = []

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "busy", "object": "model"}]})

    async def chat(_request: web.Request) -> web.Response:
        calls.append("chat")
        error = {"error": {"message": "quota exceeded", "type": "rate_limit_exceeded"}}
        return web.json_response(error, status=429, headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app, calls


@pytest_asyncio.fixture
async def route(tiny: Remote) -> AsyncIterator[tuple[TestClient[Any, Any], list[str]]]:
    """A server whose route `chat` tries the rate-limited provider, then llama.cpp."""
    upstream, calls = await limited_upstream()
    async with TestServer(upstream) as provider:
        raw = {
            "bindings": {
                "limited": {
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{provider.port}/v1",
                    "api_key": "sk-provider",
                    "retries": 1,
                },
                "backup": {"type": "openai", **tiny.settings()},
            },
            "routes": {"chat": ["limited/busy", f"backup/{tiny.model}"]},
            "resilience": {"health_interval_s": 0},
        }
        plugins = load_plugins({"openai": KitPlugin(OpenAIBinding)}, entry_points=False)
        app = create_app(parse_config(raw), plugins)
        async with TestClient(TestServer(app, handler_cancellation=True)) as client:
            yield client, calls


async def test_a_provider_429_hands_over_to_the_next_target(
    route: tuple[TestClient[Any, Any], list[str]],
) -> None:
    client, calls = route
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    started = time.monotonic()
    answer = await within(TIMEOUT, client.post("/v1/chat/completions", json=body), "chat")
    # the provider's Retry-After (3 s) is not waited for while another target can serve:
    # before, the binding waited it out before each of its retries, then handed over
    assert time.monotonic() - started < 2.5
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["model"].startswith("backup/")
    streamed = await within(
        TIMEOUT, client.post("/v1/chat/completions", json={**body, "stream": True}), "stream"
    )
    assert streamed.status == 200, await streamed.text()
    models = {
        json.loads(line[6:])["model"]
        for line in (await streamed.text()).splitlines()
        if line.startswith("data: {")
    }
    assert models and all(m.startswith("backup/") for m in models), models
    assert calls == ["chat", "chat"]  # the provider was asked once each time, then handed over
    # its 429 is no failure of the backend: the circuit stays closed
    assert client.server.app[BREAKERS].of("limited").current_state() == "closed"
    # asked directly (no other target), the binding still waits and retries as configured
    direct = {**body, "model": "limited/busy"}
    refused = await within(TIMEOUT, client.post("/v1/chat/completions", json=direct), "direct")
    assert refused.status == 429 and calls == ["chat"] * 4
