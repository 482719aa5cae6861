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

from .conftest import FixedNode, Node

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
