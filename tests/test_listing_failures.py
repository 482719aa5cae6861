"""A failed model list is remembered for a few seconds: the listings that gather every instance
(`/v1/models`, `/api/tags`, the pages) do not wait on a down backend at every load."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import MakeClient, MakeConfig

from lollms_server import guard
from lollms_server.bindings import Binding, ModelInfo
from lollms_server.errors import BackendUnavailable
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]


class Down(Binding):
    """A backend that is down: every model list fails, counted."""

    name = "down"
    capabilities = frozenset({"ttt"})
    calls = 0

    async def list_models(self) -> list[ModelInfo]:
        type(self).calls += 1
        await asyncio.sleep(0.05)  # a connection attempt and its retries, shortened
        raise BackendUnavailable("cannot connect to the upstream", binding=self.instance_name)


class DownPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Down]


@pytest.fixture
async def client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """echo and one instance whose backend is down."""
    Down.calls = 0
    config = make_config(
        {
            "bindings": {"echo": {"type": "echo"}, "gone": {"type": "down"}},
            "defaults": {"ttt": "echo"},
            "resilience": {"health_interval_s": 0},
        }
    )
    return await make_client(config, plugins=load_plugins(extra={"d": DownPlugin()}))


async def test_a_failed_model_list_is_remembered_briefly(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in ("/v1/models", "/api/tags", "/", "/api/v1/list_models", "/v1/models"):
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())
    assert Down.calls == 1  # five listings, one call to the down backend
    listing = await (await client.get("/api/v1/list_models")).json()
    assert "cannot connect" in listing["errors"]["gone"]["message"]
    assert listing["models"]["echo"]
    monkeypatch.setattr(guard, "LIST_FAILURE_MEMO_S", 0.0)  # the memory has passed
    await client.get("/v1/models")
    assert Down.calls == 2


async def test_listings_at_once_share_one_call(client: Client) -> None:
    """Pages and model lists asked at the same moment wait on one call, not one each."""
    paths = ("/v1/models", "/api/tags", "/", "/api/v1/list_models", "/models")
    answers = await asyncio.gather(*(client.get(path) for path in paths))
    assert [answer.status for answer in answers] == [200] * len(paths)
    assert Down.calls == 1
