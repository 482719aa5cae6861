"""A key's token budget on a gateway whose route serves from its second target (the first node
is down): the prompt tokens SmolLM2's chat template adds count in every reservation.

Real processes on loopback: a SmolLM2 node (llama.cpp) and a gateway with a route whose first
target is a node that is not there, so every request is served by the fallback.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, free_port, lollms_process
from lollms_server.testing.process import SERVER_COMMAND, server_env

from .conftest import SMOL_MODEL, FixedNode

BUDGET = 400
ROUTE = "smol"
BODY = {
    "model": ROUTE,
    "messages": [{"role": "user", "content": "Hi"}],  # 1 token by its characters; ~31 real
    "max_tokens": 8,
}


@pytest.fixture(scope="module")
def gateway(
    smol_nodes: tuple[FixedNode, FixedNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    """The gateway (keys required) and a user key of it with a BUDGET-token tpm."""
    node = smol_nodes[1]
    config = f"""\
[security]
local_access = false

[bindings.dead]
type = "lollms"
base_url = "http://127.0.0.1:{free_port()}"
retries = 0
connect_timeout_s = 1.0

[bindings.s2]
type = "lollms"
base_url = "{node.url}"
api_key = "{node.key}"

[routes]
"{ROUTE}" = ["dead/{SMOL_MODEL}", "s2/{SMOL_MODEL}"]
"""
    folder = tmp_path_factory.mktemp("budget-gateway")
    with lollms_process(folder, config) as server:
        yield server, make_key(folder)


def make_key(folder: Path) -> str:
    """A user key of the gateway with a BUDGET-token tpm, made with its CLI."""
    made = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create",
         "--name", "burst", "--role", "user", "--tpm", str(BUDGET)],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return made.stdout.strip()


async def test_a_burst_through_a_route_served_by_its_fallback_stays_within_the_budget(
    gateway: tuple[ServerProcess, str],
) -> None:
    """Reservations added the template's tokens the route's first target had shown, but they
    were learnt from the target that served: with the first node down, none were ever added,
    and 24 parallel requests on a 400-token budget served about 1,000 tokens, burst after
    burst. Now a reservation adds the most any of the route's targets showed."""
    server, key = gateway
    url, headers = f"{server.url}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def one() -> int:
            async with session.post(url, json=BODY, headers=headers) as response:
                if response.status == 429:
                    return 0
                answer = await response.json()
                assert response.status == 200, answer
                assert answer["model"] == f"s2/{SMOL_MODEL}"
                return int(answer["usage"]["total_tokens"])

        first = await one()  # the served model's first answer: its template's prompt tokens
        assert first > 30
        served = [first, *await asyncio.gather(*(one() for _ in range(24)))]
    assert sum(served) <= BUDGET + first, served
    assert sum(1 for tokens in served if tokens) >= 5  # the budget is really used
