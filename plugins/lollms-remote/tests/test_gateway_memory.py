"""A gateway's books are its own machine's: models a node holds are not booked in its memory
budget nor counted in its `max_loaded_models`, and only the node unloads them on its own.

Real processes on loopback: an echo node whose models each report 300 MiB (it has 4 GiB), and
a gateway with a 256 MiB RAM budget, at most 2 models, a 1 s keep_alive and a local echo model
of 200 MiB (pinned).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, backend_unavailable, lollms_process

from .conftest import ECHO_NODE, Node, start_node

TIMEOUT = aiohttp.ClientTimeout(total=60)
NODE = ECHO_NODE.format(delay_ms=0, budget="4GiB").replace(
    "[resources]", "model_memory_mb = 300\n\n[resources]"
)


@pytest.fixture(scope="module")
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Node]]:
    """The gateway (`n` for the node, `local` an echo model of its own: 200 MiB) and the node."""
    with ExitStack() as stack:
        try:
            node: Node = start_node(stack, tmp_path_factory.mktemp("node-300"), NODE, "gw")
        except AssertionError as exc:
            backend_unavailable(request, str(exc))
        config = f"""\
[bindings.n]
type = "lollms"
base_url = "{node.url}"
api_key = "{node.key}"

[bindings.local]
type = "echo"
model_memory_mb = 200

[resources]
ram_budget = "256MiB"
max_loaded_models = 2
keep_alive_s = 1
pinned = ["local/echo"]
"""
        yield stack.enter_context(lollms_process(tmp_path_factory.mktemp("gw-256"), config)), node


async def test_node_models_take_none_of_the_gateways_budget(
    gateway: tuple[ServerProcess, Node],
) -> None:
    """Each node model (300 MiB there) was booked in the gateway's own RAM: the first one did
    not fit its 256 MiB (503 `overloaded`, "does not fit: cpu"), so a small gateway could
    serve no node model bigger than its own RAM, and loading one unloaded the gateway's own
    models; with `max_loaded_models = 2` the third node model unloaded another on the node, and
    the gateway's keep_alive unloaded them there (a model another gateway was using between
    its requests). Now they are served, the local model stays, and the node keeps its own."""
    server, node = gateway
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:

        async def chat(model: str) -> None:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(f"{server.url}/v1/chat/completions", json=body) as answer:
                reply = await answer.json()
            assert answer.status == 200, reply
            assert reply["choices"][0]["message"]["content"] == "hi"

        await chat("local/echo")
        for model in ("echo/echo", "echo/think", "echo/slow"):
            await chat(f"n/{model}")
        async with http.get(f"{server.url}/api/v1/status") as answer:
            status = await answer.json()
    await asyncio.sleep(3)  # the gateway's keep_alive (1 s) ran out twice: the node's did not
    node_status = node.get("/api/v1/status")
    assert {"echo/echo", "echo/think", "echo/slow"} <= set(node_status["loaded"]), node_status
    assert "local/echo" in status["loaded"], status
    assert {"n/echo/echo", "n/echo/think", "n/echo/slow"} <= set(status["loaded"]), status
    (cpu,) = [device for device in status["devices"] if device["name"] == "cpu"]
    assert cpu["used_by_models_bytes"] == 200 * 2**20, cpu
    async with (  # Ollama's view of the loaded models: the node's size
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(f"{server.url}/api/ps") as answer,
    ):
        sizes = {m["name"]: m["size"] for m in (await answer.json())["models"]}
    assert sizes["n/echo/echo:latest"] == 300 * 2**20, sizes
