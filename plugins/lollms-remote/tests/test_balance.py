"""least-busy over nodes counts the gateway's own generations once (real processes).

The route adds the gateway's own calls on a node (counted as they start and end) to the load
the node last reported; the binding takes those calls out of the node's figures, or a node
running our work looked busier than one running as much of somebody else's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, lollms_process

from .conftest import Node

ROUTE = "spread-slow"


@pytest.fixture(scope="module")
def gateway(
    echo_nodes: tuple[Node, Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A gateway over both echo nodes with a least-busy route over their `slow` model."""
    lines = []
    for index, node in enumerate(echo_nodes, 1):
        lines += [f"[bindings.n{index}]", 'type = "lollms"', f'base_url = "{node.url}"']
        lines += [f'api_key = "{node.key}"', ""]
    targets = '"n1/echo/slow", "n2/echo/slow"'
    lines += ["[routes]", f'"{ROUTE}" = {{targets = [{targets}], strategy = "least-busy"}}']
    folder = tmp_path_factory.mktemp("balance-gateway")
    with lollms_process(folder, "\n".join(lines) + "\n") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def body(model: str, binding: str | None = None, words: int = 2, **extra: Any) -> dict[str, Any]:
    """A text generation of `words` words (the `slow` model streams one every 50 ms)."""
    text = " ".join(["word"] * words)
    return {
        "input_data": [{"type": "text", "data": text}],
        "binding_name": binding,
        "model_name": model,
        **extra,
    }


async def open_stream(
    http: aiohttp.ClientSession, url: str, payload: Any, key: str | None = None
) -> aiohttp.ClientResponse:
    """A stream opened up to its first chunk."""
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    answer = await http.post(f"{url}/api/v1/generate", json=payload, headers=auth)
    assert answer.status == 200, await answer.text()
    while True:
        line = (await answer.content.readline()).decode()
        if line.startswith("data: ") and json.loads(line[6:])["type"] == "chunk":
            return answer


async def until(check: Callable[[], bool], tries: int = 200) -> bool:
    """Poll `check` every 0.1 s."""
    for _ in range(tries):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


def slow_depth(node: Node) -> int:
    """The node's `slow` generations running or queued, as its status says."""
    return int(node.get("/api/v1/status")["queue_depth"].get("echo/slow", 0))


async def generate(http: aiohttp.ClientSession, url: str, payload: Any) -> dict[str, Any]:
    """A whole generation; its answer."""
    async with http.post(f"{url}/api/v1/generate", json=payload) as answer:
        result: dict[str, Any] = json.loads(await answer.text())
        assert answer.status == 200, result
        return result


async def test_least_busy_counts_the_gateways_own_streams_once(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """Two `slow` streams of ours on n1, three of another client's on n2, each node's latest
    answer saying so: n1 is the less busy (2 against 3) and the route's next request goes
    there. Counting ours from n1's figure as well made it 4 against 3, and n2 served."""
    first, second = echo_nodes
    assert await until(lambda: slow_depth(first) == slow_depth(second) == 0)
    long = body("echo/slow", words=400, stream=True)
    held = [await open_stream(http, gateway.url, {**long, "binding_name": "n1"}) for _ in range(2)]
    try:
        direct = {**long, "binding_name": "echo", "model_name": "slow"}
        held += [await open_stream(http, second.url, direct, second.key) for _ in range(3)]
        assert (slow_depth(first), slow_depth(second)) == (2, 3)
        for name in ("n1", "n2"):  # fresh figures of each node, from an answer's headers
            await generate(http, gateway.url, body("echo/echo", name))
        answer = await generate(http, gateway.url, body(ROUTE))
        assert answer["binding_instance"] == "n1"
    finally:
        for stream in held:
            stream.close()
    assert await until(lambda: slow_depth(first) == slow_depth(second) == 0)
