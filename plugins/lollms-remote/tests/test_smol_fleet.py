"""A gateway over two SmolLM2 nodes (llama.cpp, one thread each): all real processes on loopback.

Balancing by the queue depth the nodes report, cancellation reaching a node's generation, and a
node killed with -9 mid-stream (an `error` event naming it, the other node serving, the node
restarted on its port serving again). One gateway for the module; the kill test runs last.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, lollms_process
from lollms_server.testing.server import sse_events

from .conftest import SMOL_MODEL, FixedNode

TIMEOUT = aiohttp.ClientTimeout(total=120)
ROUTE = "smol"
LONG = "Write the word hello 300 times."  # SmolLM2 at temperature 0 runs to max_tokens


@pytest.fixture(scope="module")
def gateway(
    smol_nodes: tuple[FixedNode, FixedNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Instances `s1`, `s2` for the nodes (a failure opens a circuit, health every second) and
    a least-busy route over both."""
    lines = []
    for name, node in zip(("s1", "s2"), smol_nodes, strict=True):
        lines += [
            f"[bindings.{name}]",
            'type = "lollms"',
            f'base_url = "{node.url}"',
            f'api_key = "{node.key}"',
            "retries = 0",
            "connect_timeout_s = 2.0",
            "health_timeout_s = 2.0",
            "",
        ]
    targets = f'"s1/{SMOL_MODEL}", "s2/{SMOL_MODEL}"'
    lines += [
        "[resilience]",
        "failure_threshold = 1",
        "cooldown_s = 600",
        "health_interval_s = 1",
        "",
        "[routes]",
        f'"{ROUTE}" = {{targets = [{targets}], strategy = "least-busy"}}',
    ]
    with lollms_process(tmp_path_factory.mktemp("smol-gateway"), "\n".join(lines) + "\n") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


def body(model: str, binding: str | None = None, *, tokens: int = 4, **extra: Any) -> Any:
    """A text generation of SmolLM2 at temperature 0."""
    return {
        "input_data": [{"type": "text", "data": LONG if tokens > 16 else "Say hi."}],
        "binding_name": binding,
        "model_name": model,
        "parameters": {"max_tokens": tokens, "temperature": 0.0},
        **extra,
    }


async def served_by(http: aiohttp.ClientSession, url: str, payload: Any) -> str:
    """Who served a generation (whole, or a stream's `final` metadata)."""
    async with http.post(f"{url}/api/v1/generate", json=payload) as answer:
        text = await answer.text()
    assert answer.status == 200, text
    found = sse_events(text)[-1]["metadata"] if payload.get("stream") else json.loads(text)
    return str(found["binding_instance"])


def depth(node: FixedNode) -> int:
    """SmolLM2 generations running or waiting on the node, as its status says."""
    return int(node.get("/api/v1/status")["queue_depth"].get(SMOL_MODEL, 0))


def cancelled(node: FixedNode) -> float:
    """Generations the node counted as left by their client (status 499)."""
    request = urllib.request.Request(
        f"{node.url}/metrics", headers={"Authorization": f"Bearer {node.key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read().decode()
    pattern = r'^lollms_generations_total\{[^}]*status="499"[^}]*\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


async def until(check: Callable[[], bool], tries: int = 200) -> bool:
    """Poll `check` every 0.1 s."""
    for _ in range(tries):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


async def open_stream(
    http: aiohttp.ClientSession, url: str, payload: Any, key: str | None = None
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    """A stream opened up to its first chunk; the response and its `started` event."""
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    answer = await http.post(f"{url}/api/v1/generate", json=payload, headers=auth)
    assert answer.status == 200, await answer.text()
    started: dict[str, Any] = {}
    while True:
        line = (await answer.content.readline()).decode()
        if line.startswith("data: "):
            event = json.loads(line[len("data: ") :])
            started = started or event
            if event["type"] == "chunk":
                return answer, started


async def test_add_bos_and_add_eos_reach_the_nodes_tokenizer(
    gateway: ServerProcess, smol_nodes: tuple[FixedNode, FixedNode], http: aiohttp.ClientSession
) -> None:
    """Upstream's add_bos/add_eos through the gateway give the node's own BOS/EOS ids."""
    node = smol_nodes[0]
    text = {"text": "Hello there", "add_bos": True, "add_eos": True}

    async def tokens(url: str, body: dict[str, Any], key: str | None = None) -> list[int]:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        async with http.post(f"{url}/api/v1/tokenize", json=body, headers=auth) as answer:
            found = await answer.json()
        assert answer.status == 200, found
        return list(found["tokens"])

    instance, model = SMOL_MODEL.split("/")
    on_node = {"binding_name": instance, "model_name": model}
    direct = await tokens(node.url, {**text, **on_node}, node.key)
    plain = await tokens(node.url, {"text": "Hello there", **on_node}, node.key)
    through = await tokens(gateway.url, {**text, "binding_name": "s1", "model_name": SMOL_MODEL})
    assert through == direct
    assert len(direct) > len(plain)  # SmolLM2 has special tokens to add


async def test_parallel_requests_spread_over_both_nodes(
    gateway: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """Four parallel streams of the route: both nodes serve."""
    payload = body(ROUTE, tokens=8, stream=True)
    served = await asyncio.gather(*(served_by(http, gateway.url, payload) for _ in range(4)))
    assert set(served) == {"s1", "s2"}, served


async def test_least_busy_follows_the_queue_depth_the_nodes_report(
    gateway: ServerProcess, smol_nodes: tuple[FixedNode, FixedNode], http: aiohttp.ClientSession
) -> None:
    """s1 runs a long generation another client sent it directly: once an answer of s1 said
    so, the route sends new requests to s2."""
    first, _ = smol_nodes
    held, _ = await open_stream(
        http, first.url, body("smollm2", "llamacpp", tokens=900, stream=True), first.key
    )
    try:
        assert depth(first) == 1
        for name in ("s1", "s2"):  # any answer of a node carries its figures
            async with http.get(f"{gateway.url}/api/v1/list_available_models/{name}") as answer:
                assert answer.status == 200, await answer.text()
        for _ in range(3):
            assert await served_by(http, gateway.url, body(ROUTE)) == "s2"
    finally:
        held.close()
    assert await until(lambda: depth(first) == 0)


async def test_cancellation_stops_the_generation_on_the_node(
    gateway: ServerProcess, smol_nodes: tuple[FixedNode, FixedNode], http: aiohttp.ClientSession
) -> None:
    """A client leaving the gateway mid-stream: the node's count of active SmolLM2
    generations drops back and the node counts the generation as left by its client."""
    first, _ = smol_nodes
    assert await until(lambda: depth(first) == 0)
    before = cancelled(first)
    payload = body(SMOL_MODEL, "s1", tokens=900, stream=True)
    answer, started = await open_stream(http, gateway.url, payload)
    assert started["metadata"]["binding"] == "s1"
    assert depth(first) == 1
    answer.close()  # the client leaves
    assert await until(lambda: depth(first) == 0)
    assert await until(lambda: cancelled(first) == before + 1)


async def test_killed_node_errors_its_stream_then_fails_over_and_comes_back(
    gateway: ServerProcess, smol_nodes: tuple[FixedNode, FixedNode], http: aiohttp.ClientSession
) -> None:
    """kill -9 of the node serving a stream: an `error` event naming it; the other node serves
    new requests; restarted on its port, the first node serves again."""
    first, _ = smol_nodes
    for name in ("s1", "s2"):  # both idle, as of their latest answers
        assert await served_by(http, gateway.url, body(SMOL_MODEL, name)) == name
    answer, started = await open_stream(http, gateway.url, body(ROUTE, tokens=900, stream=True))
    assert started["metadata"]["binding"] == "s1"
    first.kill()
    events = sse_events(await answer.text())
    errors = [event for event in events if event["type"] == "error"]
    assert errors, events
    assert "s1" in errors[0]["content"] and errors[0]["metadata"]["error"]["binding"] == "s1"

    for _ in range(3):  # the dead node's circuit is open: the other node serves
        assert await served_by(http, gateway.url, body(ROUTE)) == "s2"

    first.start()
    served = ""
    for _ in range(100):  # the monitor's health check (every second) closes the circuit
        served = await served_by(http, gateway.url, body(ROUTE))
        if served == "s1":
            break
        await asyncio.sleep(0.2)
    assert served == "s1", gateway.log()[-3000:]
