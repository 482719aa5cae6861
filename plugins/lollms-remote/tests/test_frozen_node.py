"""A node frozen (SIGSTOP) in the middle of a load must not hold the gateway's other loads."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, lollms_process

ECHO = '[bindings.echo]\ntype = "echo"\n'


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    """Two echo nodes (loopback: local access, admin there), and a gateway over both."""
    with (
        lollms_process(tmp_path_factory.mktemp("frozen"), ECHO) as frozen,
        lollms_process(tmp_path_factory.mktemp("alive"), ECHO) as alive,
    ):
        config = "".join(
            f'[bindings.{name}]\ntype = "lollms"\nbase_url = "{node.url}"\nmodels_cache_s = 0.5\n\n'
            for name, node in (("frozen", frozen), ("alive", alive))
        )
        config += "[resilience]\nhealth_interval_s = 1\n\n[routes]\n"
        config += '"fleet-echo" = {fleet = true, model = "echo/echo"}\n'
        config += '"ordered" = ["frozen/echo/echo", "alive/echo/echo"]\n'
        with lollms_process(tmp_path_factory.mktemp("gw"), config) as gateway:
            yield frozen, alive, gateway


async def test_a_frozen_node_does_not_hold_loads_on_other_instances(
    two_nodes: tuple[ServerProcess, ...],
) -> None:
    """While a load on the frozen node waits (read timeout 300 s), a generation of a model of
    the other node, which loads it first, answers at once (it waited for the frozen load:
    one lock over every load of the gateway)."""
    frozen, _, gateway = two_nodes
    ask = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            stuck = asyncio.ensure_future(
                http.post(f"{gateway.url}/v1/chat/completions",
                          json={"model": "frozen/echo/think", **ask})
            )  # fmt: skip
            await asyncio.sleep(1)
            started = time.monotonic()
            async with http.post(
                f"{gateway.url}/v1/chat/completions",
                json={"model": "alive/echo/think", **ask},
                timeout=aiohttp.ClientTimeout(total=20),
            ) as answer:
                text = await answer.text()
            took = time.monotonic() - started
            stuck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stuck
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    assert answer.status == 200, text
    assert took < 5, took


async def test_a_frozen_node_does_not_hold_a_fleet_route(
    two_nodes: tuple[ServerProcess, ...],
) -> None:
    """A fleet route asks each node whether it lists the model (its listing is 0.5 s old): the
    frozen node's silence leaves it out, and the other node serves at once."""
    frozen, _, gateway = two_nodes
    ask = {"model": "fleet-echo", "messages": [{"role": "user", "content": "hi"}]}
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1)  # both listings are stale
        started = time.monotonic()
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.post(f"{gateway.url}/v1/chat/completions", json=ask) as answer,
        ):
            body = await answer.json()
        took = time.monotonic() - started
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    assert answer.status == 200 and body["model"] == "alive/echo/echo", body
    assert took < 10, took


async def test_a_route_tries_a_node_seen_down_last(two_nodes: tuple[ServerProcess, ...]) -> None:
    """Once the health monitor saw the frozen node down, a route listing it first is served by
    the next target at once (each call waited read_timeout_s on the frozen node: 300 s)."""
    frozen, _, gateway = two_nodes
    ask = {"model": "ordered", "messages": [{"role": "user", "content": "hi"}]}
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for _ in range(40):  # the monitor's check times out after health_timeout_s (5 s)
                async with http.get(f"{gateway.url}/api/v1/ready") as ready:
                    states = (await ready.json())["instances"]
                if states["frozen"]["state"] == "down":
                    break
                await asyncio.sleep(0.5)
            started = time.monotonic()
            async with http.post(f"{gateway.url}/v1/chat/completions", json=ask) as answer:
                body = await answer.json()
            took = time.monotonic() - started
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    assert states["frozen"]["state"] == "down", states
    assert answer.status == 200 and body["model"] == "alive/echo/echo", body
    assert took < 3, took


async def test_a_frozen_node_costs_a_fleet_route_one_wait_not_one_per_request(
    two_nodes: tuple[ServerProcess, ...],
) -> None:
    """Once the frozen node's listing failed, the fleet route leaves it out without waiting
    while it is asked again in the background (every request waited health_timeout_s, 5 s, on
    it for as long as it stayed frozen); thawed, it serves the route again."""
    frozen, _, gateway = two_nodes
    ask = {"model": "fleet-echo", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def served_by() -> tuple[str, float]:
            started = time.monotonic()
            async with http.post(f"{gateway.url}/v1/chat/completions", json=ask) as answer:
                body = await answer.json()
            assert answer.status == 200, body
            return body["model"], time.monotonic() - started

        frozen.process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(1)  # both listings are stale
            await served_by()  # the frozen node's listing times out: left out
            later = [await served_by() for _ in range(4)]
            await asyncio.sleep(0.6)
            later += [await served_by() for _ in range(2)]
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        deadline, back = time.monotonic() + 15, set()
        while time.monotonic() < deadline and "frozen/echo/echo" not in back:
            back.add((await served_by())[0])
            await asyncio.sleep(0.3)
    assert {model for model, _ in later} == {"alive/echo/echo"}, later
    assert max(took for _, took in later) < 1, later
    assert "frozen/echo/echo" in back, back
