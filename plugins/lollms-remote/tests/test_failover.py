"""A node killed with -9 while it streams, then restarted: real processes on loopback.

The in-flight stream gets an `error` event naming the node; new requests go to the other node
(the dead one's circuit opens); the restarted node, on the same port, is used again once the
gateway's health monitor closes its circuit.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, free_port, lollms_process, wait_for_http
from lollms_server.testing.process import SERVER_COMMAND, server_env, toml_table

from .conftest import ECHO_NODE, make_key

TIMEOUT = aiohttp.ClientTimeout(total=60)


class FixedNode:
    """An echo node on a fixed port, so that it can come back where it was."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = toml_table("server", {"host": "127.0.0.1", "port": self.port})
        (folder / "lollms.toml").write_text(
            server + "\n" + ECHO_NODE.format(delay_ms=50, budget="1GiB")
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    def start(self) -> FixedNode:
        """Start the process and wait until it answers."""
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, "--config", str(self.folder / "lollms.toml"), "serve"],
                env=server_env(self.folder / "data"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_for_http(f"{self.url}/api/v1/health", timeout_s=60), self.log()
        self.key = self.key or make_key(self.folder, "gw")
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(15)

    def log(self) -> str:
        """What the process wrote."""
        return (self.folder / "server.log").read_text(errors="replace")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ServerProcess, FixedNode, FixedNode]]:
    """A gateway over two fixed-port echo nodes; an ordered route prefers n1."""
    nodes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        nodes.append(FixedNode(tmp_path / name))
    try:
        for node in nodes:
            node.start()
        first, second = nodes
        config = f"""\
[bindings.n1]
type = "lollms"
base_url = "{first.url}"
api_key = "{first.key}"
retries = 0
connect_timeout_s = 2.0
health_timeout_s = 2.0

[bindings.n2]
type = "lollms"
base_url = "{second.url}"
api_key = "{second.key}"
retries = 0

[resilience]
failure_threshold = 1
cooldown_s = 600
health_interval_s = 1

[routes]
"fleet" = ["n1/echo/slow", "n2/echo/slow"]
"""
        with lollms_process(tmp_path / "gateway", config) as gateway:
            yield gateway, first, second
    finally:
        for node in nodes:
            node.kill()


async def generate(http: aiohttp.ClientSession, url: str, **extra: Any) -> dict[str, Any]:
    """A whole `generate` of the fleet route."""
    payload = {"input_data": [{"type": "text", "data": "hi there"}], "model_name": "fleet"}
    async with http.post(f"{url}/api/v1/generate", json={**payload, **extra}) as answer:
        body: dict[str, Any] = await answer.json()
        assert answer.status == 200, body
        return body


async def test_killed_node_errors_its_stream_then_fails_over_and_comes_back(
    fleet: tuple[ServerProcess, FixedNode, FixedNode],
) -> None:
    """kill -9 of the node serving a stream: an error event naming it; the other node serves
    new requests; after a restart on the same port the first node serves again."""
    gateway, first, _second = fleet
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        assert (await generate(http, gateway.url))["binding_instance"] == "n1"
        payload = {
            "input_data": [{"type": "text", "data": " ".join(["word"] * 200)}],
            "model_name": "fleet",
            "stream": True,
        }
        async with http.post(f"{gateway.url}/api/v1/generate", json=payload) as answer:
            assert answer.status == 200
            started = json.loads((await answer.content.readline()).decode()[len("data: ") :])
            assert started["metadata"]["binding"] == "n1"
            await answer.content.readline()
            first.kill()
            rest = (await answer.text()).split("\n\n")
        events = [json.loads(b[len("data: ") :]) for b in rest if b.startswith("data: ")]
        errors = [event for event in events if event["type"] == "error"]
        assert errors, events
        assert "n1" in errors[0]["content"] and errors[0]["metadata"]["error"]["binding"] == "n1"

        for _ in range(3):  # the dead node's circuit is open: the other node serves
            assert (await generate(http, gateway.url))["binding_instance"] == "n2"

        first.start()
        served = ""
        for _ in range(100):  # the monitor's health check (every second) closes the circuit
            served = (await generate(http, gateway.url))["binding_instance"]
            if served == "n1":
                break
            await asyncio.sleep(0.2)
        assert served == "n1", gateway.log()[-3000:]
