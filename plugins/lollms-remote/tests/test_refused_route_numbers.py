"""A request for a route that the gateway refuses before any node is tried (the key's token
budget): its audit row and its generation counter name the route, not a node that never saw
it (they named the route's first node: an operator read a node's 429s that it never sent)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, lollms_process

from .conftest import Node, make_key


@pytest.fixture(scope="module")
def gateway(
    echo_nodes: tuple[Node, Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str, str]]:
    """A gateway (keys required) with a route over both echo nodes, an admin key and a user
    key with a budget of 5 tokens a minute (its first request spends it)."""
    config = "".join(
        f'[bindings.{name}]\ntype = "lollms"\nbase_url = "{node.url}"\napi_key = "{node.key}"\n\n'
        for name, node in zip(("gpu1", "gpu2"), echo_nodes, strict=True)
    )
    config += "[security]\nlocal_access = false\n\n[routes]\n"
    config += '"chat" = ["gpu1/echo/echo", "gpu2/echo/echo"]\n'
    folder = tmp_path_factory.mktemp("gw-refused")
    with lollms_process(folder, config) as gateway:
        admin = make_key(folder, "admin")
        user = make_key(folder, "user", "user", "--tpm", "5")
        yield gateway, admin, user


async def test_a_refused_route_request_names_the_route(
    gateway: tuple[ServerProcess, str, str],
) -> None:
    """The first request is served by gpu1; the second, refused (429), is counted and audited
    under the route; gpu1 shows one generation, a 200."""
    server, admin, user = gateway
    ask = {
        "model": "chat",
        "messages": [{"role": "user", "content": "one two three four five six"}],
    }
    statuses, ids = [], []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for _ in range(2):
            async with http.post(
                f"{server.url}/v1/chat/completions",
                json=ask,
                headers={"Authorization": f"Bearer {user}"},
            ) as answer:
                statuses.append(answer.status)
                ids.append(answer.headers["X-Request-Id"])
        auth = {"Authorization": f"Bearer {admin}"}
        async with http.get(f"{server.url}/api/v1/audit?limit=20", headers=auth) as answer:
            events = (await answer.json())["events"]
        async with http.get(f"{server.url}/metrics", headers=auth) as answer:
            metrics = await answer.text()
    assert statuses == [200, 429], statuses
    rows = {e["request_id"]: e for e in events if e["event"] == "generation"}
    assert (rows[ids[0]]["instance"], rows[ids[0]]["model"]) == ("gpu1", "echo/echo"), rows
    refused = rows[ids[1]]
    assert refused["status"] == 429 and refused["instance"] is None, json.dumps(refused)
    assert refused["model"] == "chat", json.dumps(refused)
    counted = [line for line in metrics.splitlines() if line.startswith("lollms_generations_total")]
    assert not [line for line in counted if 'instance="gpu1"' in line and "429" in line], counted
    assert [line for line in counted if 'instance="chat"' in line and "429" in line], counted
