"""A route whose first node died since the last health check (SIGKILL: its port now refuses
connections): the gateway goes to the next target at once. A refused connection started no work
on the node, so waiting the retry backoff (0.5 s and more) to try it again only delayed every
request by that much until the circuit opened; the backoff stays where waiting helps (a 5xx).
A fleet route asks each node for its models (once its listing is older than models_cache_s):
a dead node's listing is left out at once too, not after the backoff on every request."""

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


def gateway_config(dying: FixedNode, live: Node, routes: str, **extra: float) -> str:
    """A gateway's config: n1 is `dying`, n2 `live`, then `routes`."""
    config = "".join(
        f'[bindings.{name}]\ntype = "lollms"\nbase_url = "{url}"\napi_key = "{key}"\n'
        + "".join(f"{k} = {v}\n" for k, v in extra.items())
        + "\n"
        for name, url, key in (("n1", dying.url, dying.key), ("n2", live.url, live.key))
    )
    return config + "[routes]\n" + routes


@pytest.fixture(scope="module")
def gateway(
    dying: FixedNode, echo_node: Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A gateway whose route tries `dying` first, then a live echo node."""
    config = gateway_config(dying, echo_node, '"chat" = ["n1/echo/echo", "n2/echo/echo"]\n')
    with lollms_process(tmp_path_factory.mktemp("gw-refused-node"), config) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def fleet_gateway(
    dying: FixedNode, echo_node: Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A gateway with a fleet route over `dying` and a live echo node, whose listings are
    asked again for every request (models_cache_s = 0: as once the default 30 s ran out)."""
    route = '"echo" = {fleet = true, model = "echo/echo"}\n'
    config = gateway_config(dying, echo_node, route, models_cache_s=0)
    with lollms_process(tmp_path_factory.mktemp("gw-refused-fleet"), config) as gateway:
        yield gateway


async def added_by_the_dead_node(
    gateway: ServerProcess, dying: FixedNode, route: str
) -> list[float]:
    """`route` served (n1 up), n1 killed, then what n1 adds to each of REQUESTS requests of
    `route` (answered by n2), against the same request straight to n2."""
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

        await timed(route)
        dying.kill()
        direct = min([await timed("n2/echo/echo") for _ in range(3)])
        through = [await timed(route) for _ in range(REQUESTS)]
    return [round(t - direct, 3) for t in through]


async def test_a_node_refusing_connections_costs_no_backoff(
    gateway: ServerProcess, dying: FixedNode
) -> None:
    """Under 0.25 s added by the dead n1 (the backoff alone was 0.5 to 0.75 s)."""
    added = await added_by_the_dead_node(gateway, dying, "chat")
    assert max(added) < 0.25, f"the dead node added {added} s"


async def test_a_fleet_route_leaves_a_node_refusing_connections_out_at_once(
    fleet_gateway: ServerProcess, dying: FixedNode
) -> None:
    """Under 0.25 s added by the dead n1, whose listing fails every time (it added 0.5 to
    0.75 s to every request of the route, for as long as the node stayed down)."""
    added = await added_by_the_dead_node(fleet_gateway, dying, "echo")
    assert max(added) < 0.25, f"the dead node added {added} s"
