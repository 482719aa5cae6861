"""Health checks that clients ask for at once share one call to the provider: a flood of
dashboard or `list_active_bindings` requests must not become as many calls made with the
server's own provider key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lollms_openai import OpenAIBinding

from lollms_server.app import create_app
from lollms_server.config import parse_config
from lollms_server.plugins import load_plugins
from lollms_server.testing import within
from lollms_server.testing.server import KitPlugin

CLIENTS = 40


class SlowListing:
    """An OpenAI-compatible provider whose `GET /models` takes 0.5 s; counts those at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.now = 0
        self.most = 0

    async def models(self, _request: web.Request) -> web.Response:
        """The listing, slowly."""
        self.calls += 1
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.5)
        finally:
            self.now -= 1
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[TestClient[Any, Any], SlowListing]]:
    """A server with one `openai` instance on the slow provider."""
    provider = SlowListing()
    upstream = web.Application()
    upstream.router.add_get("/v1/models", provider.models)
    async with TestServer(upstream) as served:
        raw = {
            "bindings": {
                "cloud": {
                    "type": "openai",
                    "base_url": f"http://127.0.0.1:{served.port}/v1",
                    "api_key": "sk-provider",
                },
            },
            "resilience": {"health_interval_s": 0},
        }
        plugins = load_plugins({"openai": KitPlugin(OpenAIBinding)}, entry_points=False)
        app = create_app(parse_config(raw), plugins)
        async with TestClient(TestServer(app, handler_cancellation=True)) as client:
            yield client, provider


async def test_concurrent_health_checks_share_one_provider_call(
    gateway: tuple[TestClient[Any, Any], SlowListing],
) -> None:
    """Before, 40 concurrent `list_active_bindings` made 40 concurrent `GET /models` (200 made
    200: one user key could spend the provider's rate limit, with the server's key)."""
    client, provider = gateway

    async def ask() -> dict[str, Any]:
        response = await client.get("/api/v1/list_active_bindings")
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    await ask()  # the listing the server makes when it starts is over
    provider.most = 0
    answers = await within(30, asyncio.gather(*(ask() for _ in range(CLIENTS))), "health")
    assert all(a["bindings"]["cloud"]["health"]["state"] == "up" for a in answers)
    assert provider.most == 1
    assert provider.calls < CLIENTS / 4
    # a check asked after the shared one ended is a new check (the state is never stale)
    before = provider.calls
    await ask()
    assert provider.calls == before + 1
