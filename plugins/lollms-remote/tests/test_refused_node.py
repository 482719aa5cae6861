"""A route whose first node died since the last health check (SIGKILL: its port now refuses
connections): the gateway goes to the next target at once. A refused connection started no work
on the node, so waiting the retry backoff (0.5 s and more) to try it again only delayed every
request by that much until the circuit opened; the backoff stays where waiting helps (a 5xx)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, lollms_process

from .conftest import ECHO_NODE, FixedNode, Node

REQUESTS = 4  # fewer than the circuit's failure_threshold (5): each one meets the dead node


@pytest.fixture(scope="module")
def dying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixedNode]:
    """An echo node of this test's own, killed by it."""
    node = FixedNode(tmp_path_factory.mktemp("dying"), ECHO_NODE.format(delay_ms=0, budget="1GiB"))
    try:
        yield node.start()
    finally:
        node.kill()


@pytest.fixture(scope="module")
def gateway(
    dying: FixedNode, echo_node: Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A gateway whose route tries `dying` first, then a live echo node."""
    config = "".join(
        f'[bindings.{name}]\ntype = "lollms"\nbase_url = "{url}"\napi_key = "{key}"\n\n'
        for name, url, key in (("n1", dying.url, dying.key), ("n2", echo_node.url, echo_node.key))
    )
    config += '[routes]\n"chat" = ["n1/echo/echo", "n2/echo/echo"]\n'
    with lollms_process(tmp_path_factory.mktemp("gw-refused-node"), config) as gateway:
        yield gateway


async def test_a_node_refusing_connections_costs_no_backoff(
    gateway: ServerProcess, dying: FixedNode
) -> None:
    """n1 serves the route, is killed, and each next request is answered by n2 with under
    0.25 s added by the dead n1 (the backoff alone was 0.5 to 0.75 s), against the same
    request straight to n2."""
    ask = {"messages": [{"role": "user", "content": "one two"}], "max_tokens": 4}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def timed(model: str) -> float:
            started = time.perf_counter()
            url = f"{gateway.url}/v1/chat/completions"
            async with http.post(url, json={**ask, "model": model}) as answer:
                body = await answer.json()
                assert answer.status == 200, body
                assert body["choices"][0]["message"]["content"] == "one two", body
            return time.perf_counter() - started

        await timed("chat")  # n1 up: it serves
        dying.kill()
        direct = min([await timed("n2/echo/echo") for _ in range(3)])
        through = [await timed("chat") for _ in range(REQUESTS)]
    added = [round(t - direct, 3) for t in through]
    assert max(added) < 0.25, f"the dead node added {added} s (direct {direct:.3f} s)"
