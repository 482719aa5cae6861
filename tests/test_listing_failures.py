"""A failed model list is remembered for a few seconds: the listings that gather every instance
(`/v1/models`, `/api/tags`, the pages) do not wait on a down backend at every load."""

from __future__ import annotations

import asyncio
import json
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
    """A backend that is down: every model list fails, counted; `frozen` (when set) holds
    each list until it is released, `back` makes it answer."""

    name = "down"
    capabilities = frozenset({"ttt"})
    calls = 0
    frozen: asyncio.Event | None = None
    back = False

    async def list_models(self) -> list[ModelInfo]:
        type(self).calls += 1
        if self.frozen is not None:
            await self.frozen.wait()
        await asyncio.sleep(0.05)  # a connection attempt and its retries, shortened
        if self.back:
            return [ModelInfo("m1")]
        raise BackendUnavailable("cannot connect to the upstream", binding=self.instance_name)


async def calls_reach(count: int) -> None:
    """Wait (2 s at most) until the backend was asked `count` times."""
    for _ in range(200):
        if Down.calls >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"asked {Down.calls} times, not {count}")


class DownPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Down]


@pytest.fixture
async def client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """echo and one instance whose backend is down."""
    Down.calls, Down.frozen, Down.back = 0, None, False
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
    await calls_reach(2)  # asked again (in the background)


async def test_a_frozen_backend_never_holds_a_listing(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a list failed, later listings are answered from that failure at once while the
    backend is asked again in the background (here it hangs: before, every listing after the
    memory waited on it); when it answers again, the next listing has its models."""
    assert (await client.get("/v1/models")).status == 200
    assert Down.calls == 1
    monkeypatch.setattr(guard, "LIST_FAILURE_MEMO_S", 0.0)
    Down.frozen = asyncio.Event()
    for path in ("/v1/models", "/api/tags", "/api/v1/list_models"):
        async with asyncio.timeout(2):  # the health timeout (5 s) is what it waited before
            listing = await (await client.get(path)).json()
        assert "gone" not in json.dumps(listing.get("models") or listing.get("data")), listing
    await calls_reach(2)
    assert Down.calls == 2  # one retry under way, shared
    Down.back = True
    Down.frozen.set()
    for _ in range(40):
        if "gone/m1" in await (await client.get("/v1/models")).text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the backend's models never came back in the listing")


async def test_an_old_failure_is_not_trusted(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past LIST_FAILURE_STALE_S a remembered failure is asked again and waited on."""
    assert (await client.get("/v1/models")).status == 200
    monkeypatch.setattr(guard, "LIST_FAILURE_STALE_S", 0.0)
    Down.back = True
    assert "gone/m1" in await (await client.get("/v1/models")).text()
    assert Down.calls == 2


async def test_listings_at_once_share_one_call(client: Client) -> None:
    """Pages and model lists asked at the same moment wait on one call, not one each."""
    paths = ("/v1/models", "/api/tags", "/", "/api/v1/list_models", "/models")
    answers = await asyncio.gather(*(client.get(path) for path in paths))
    assert [answer.status for answer in answers] == [200] * len(paths)
    assert Down.calls == 1
