"""`[fleet] nodes` and `{fleet = true}` routes on a real gateway over three real nodes.

The two echo nodes list `echo/slow`; only the (first) SmolLM2 node lists `llamacpp/smollm2`. A
fleet route has every node listing its model as a target, so `slow` spreads over the echo nodes
and `smol` goes to the SmolLM2 node. The fleet key is a shared non-lollms key, which loopback
nodes accept (their own keys are proved in the contract tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from lollms_server.fleet import node_name
from lollms_server.testing import ServerProcess, lollms_process
from lollms_server.testing.server import sse_events

from .conftest import FixedNode, Node, make_key

TIMEOUT = aiohttp.ClientTimeout(total=60)
FLEET_KEY = "fleet-shared-secret-1234"


@pytest.fixture(scope="module")
def fleet_gateway(
    echo_nodes: tuple[Node, Node],
    smol_nodes: tuple[FixedNode, FixedNode],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A gateway whose instances all come from `[fleet] nodes`."""
    urls = ", ".join(f'"{node.url}"' for node in (*echo_nodes, smol_nodes[0]))
    config = f"""\
[fleet]
nodes = [{urls}]
api_key = "{FLEET_KEY}"

[routes]
"slow" = {{fleet = true}}
"smol" = {{fleet = true, model = "smollm2", strategy = "most-room"}}
"ghost" = {{fleet = true}}
"""
    with lollms_process(tmp_path_factory.mktemp("fleet-gateway"), config) as server:
        yield server


async def ask(http: aiohttp.ClientSession, url: str, model: str, **extra: Any) -> Any:
    """A `generate` of a route; the answer (the `final` metadata of a stream)."""
    payload = {
        "input_data": [{"type": "text", "data": "one two three four"}],
        "model_name": model,
        "parameters": {"max_tokens": 4},
        **extra,
    }
    async with http.post(f"{url}/api/v1/generate", json=payload) as answer:
        text = await answer.text()
        assert answer.status == 200, text
    return sse_events(text)[-1]["metadata"] if extra.get("stream") else json.loads(text)


async def test_fleet_route_spreads_over_the_nodes_having_the_model(
    fleet_gateway: ServerProcess,
    echo_nodes: tuple[Node, Node],
    smol_nodes: tuple[FixedNode, FixedNode],
) -> None:
    """`slow` runs on both echo nodes, `smol` on the SmolLM2 node only."""
    echo_names = {node_name(node.url) for node in echo_nodes}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        answers = await asyncio.gather(
            *(ask(http, fleet_gateway.url, "slow", stream=True) for _ in range(6))
        )
        assert {answer["binding_instance"] for answer in answers} == echo_names
        smol = await ask(http, fleet_gateway.url, "smol")
        assert smol["binding_instance"] == node_name(smol_nodes[0].url)
        assert smol["usage"]["completion_tokens"] > 0


async def test_fleet_route_without_a_node_is_model_not_found(
    fleet_gateway: ServerProcess,
) -> None:
    """No node lists the model: a 404 naming the route."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        payload = {"input_data": [{"type": "text", "data": "hi"}], "model_name": "ghost"}
        async with http.post(f"{fleet_gateway.url}/api/v1/generate", json=payload) as answer:
            body = await answer.json()
    assert answer.status == 404, body
    assert "ghost" in body["error"]["message"]


async def test_fleet_key_is_masked(fleet_gateway: ServerProcess) -> None:
    """The fleet key shows nowhere: listings and the log."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(f"{fleet_gateway.url}/api/v1/list_bindings") as answer,
    ):
        text = await answer.text()
    assert FLEET_KEY not in text and '"api_key": "***"' in text
    assert FLEET_KEY not in fleet_gateway.log()


async def test_a_key_allowed_some_nodes_uses_a_fleet_route_through_them(
    fleet_gateway: ServerProcess, echo_nodes: tuple[Node, Node]
) -> None:
    """A key allowed one echo node saw `slow` in its model list but got 403 for it (every node
    listing the model had to be allowed); it is served by its node. A key allowed no node's
    `echo/slow` neither sees the route nor may use it."""
    first = node_name(echo_nodes[0].url)
    folder = fleet_gateway.log_path.parent
    one_node = make_key(folder, "one-node", "user", "--bindings", first)
    other_model = make_key(folder, "other-model", "user", "--models", f"{first}/echo/echo")
    payload = {"input_data": [{"type": "text", "data": "one two"}], "model_name": "slow"}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:

        async def models(key: str) -> list[str]:
            headers = {"Authorization": f"Bearer {key}"}
            async with http.get(f"{fleet_gateway.url}/v1/models", headers=headers) as answer:
                return [model["id"] for model in (await answer.json())["data"]]

        async def slow(key: str) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {key}"}
            url = f"{fleet_gateway.url}/api/v1/generate"
            async with http.post(url, json=payload, headers=headers) as answer:
                return answer.status, await answer.json()

        assert "slow" in await models(one_node)
        served = await asyncio.gather(*(slow(one_node) for _ in range(4)))
        assert {status for status, _ in served} == {200}, served
        assert {answer["binding_instance"] for _, answer in served} == {first}
        assert "slow" not in await models(other_model)
        status, refused = await slow(other_model)
    assert status == 403 and "slow" in refused["error"]["message"], refused
