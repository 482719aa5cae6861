"""least-busy over nodes: the gateway's own generations count once, a stale report not at all
(real processes).

The route adds the gateway's own calls on a node (counted as they start and end) to the load
the node last reported; the binding takes those calls out of the node's figures, or a node
running our work looked busier than one running as much of somebody else's. A report older
than `load_fresh_s` counts as none (and the node is asked again): a node that looked busy got
none of our work, hence no answer that would say it is idle again.
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
FRESH_ROUTE = "spread-fresh"  # over f1 and f2: the same nodes, reports fresh for 1 s
FRESH_S = 1.0


@pytest.fixture(scope="module")
def gateway(
    echo_nodes: tuple[Node, Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A gateway over both echo nodes with a least-busy route over their `slow` model."""
    lines = []
    for prefix, extra in (("n", ""), ("f", f"load_fresh_s = {FRESH_S}")):
        for index, node in enumerate(echo_nodes, 1):
            lines += [f"[bindings.{prefix}{index}]", 'type = "lollms"', f'base_url = "{node.url}"']
            lines += [f'api_key = "{node.key}"', extra, ""]
    lines += ["[routes]"]
    for route, prefix in ((ROUTE, "n"), (FRESH_ROUTE, "f")):
        targets = f'"{prefix}1/echo/slow", "{prefix}2/echo/slow"'
        lines += [f'"{route}" = {{targets = [{targets}], strategy = "least-busy"}}']
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


async def test_a_stale_report_of_other_work_stops_counting(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """Another client's three `slow` streams on n1, in n1's latest answer: the route sends its
    request to n2. Those streams end; once the report is older than `load_fresh_s` it counts as
    none and n1 serves again (before, n1 stayed busy in the gateway's eyes until the next
    health check, 30 s later, and got nothing)."""
    first, second = echo_nodes
    assert await until(lambda: slow_depth(first) == slow_depth(second) == 0)
    direct = body("slow", "echo", words=400, stream=True)
    held = [await open_stream(http, first.url, direct, first.key) for _ in range(3)]
    try:
        for name in ("f1", "f2"):  # fresh figures of each node, from an answer's headers
            await generate(http, gateway.url, body("echo/echo", name))
        assert (await generate(http, gateway.url, body(FRESH_ROUTE)))["binding_instance"] == "f2"
    finally:
        for stream in held:
            stream.close()
    assert await until(lambda: slow_depth(first) == 0)
    await asyncio.sleep(FRESH_S + 0.2)  # n1's report (3 queued) grows old
    assert (await generate(http, gateway.url, body(FRESH_ROUTE)))["binding_instance"] == "f1"


async def test_an_idle_nodes_answer_clears_its_busy_lanes(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """Another client's `slow` stream on n1, in n1's answer: the route sends its request to n2.
    The stream ends; n1's next answer has no busy lane, so it omits X-Lollms-Model-Queue-Depth
    (it was sent empty) and the gateway takes that as none busy: n1 serves again at once."""
    first, second = echo_nodes
    assert await until(lambda: slow_depth(first) == slow_depth(second) == 0)
    direct = body("slow", "echo", words=400, stream=True)
    held = await open_stream(http, first.url, direct, first.key)
    try:
        for name in ("n1", "n2"):  # fresh figures of each node, from an answer's headers
            await generate(http, gateway.url, body("echo/echo", name))
        assert (await generate(http, gateway.url, body(ROUTE)))["binding_instance"] == "n2"
    finally:
        held.close()
    assert await until(lambda: slow_depth(first) == 0)
    auth = {"Authorization": f"Bearer {first.key}"}
    async with http.get(f"{first.url}/api/v1/list_models", headers=auth) as answer:
        assert answer.headers["X-Lollms-Queue-Depth"] == "0"
        assert "X-Lollms-Model-Queue-Depth" not in answer.headers
    await generate(http, gateway.url, body("echo/echo", "n1"))  # n1's idle answer
    assert (await generate(http, gateway.url, body(ROUTE)))["binding_instance"] == "n1"
