"""A gateway that lists itself as a fleet node: each call passes `X-Lollms-Hops` on, and one
that went through `MAX_HOPS` lollms-servers is not passed on again (508 loop_detected)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import pytest

from lollms_server.fleet import node_name
from lollms_server.testing import ServerProcess, free_port, lollms_process
from lollms_server.testing.process import request_count
from lollms_server.trace import MAX_HOPS

TIMEOUT = aiohttp.ClientTimeout(total=60)


@pytest.fixture(scope="module")
def looped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A gateway with an echo instance whose only fleet node is itself."""
    port = free_port()
    config = f"""\
[bindings.echo]
type = "echo"

[fleet]
nodes = ["http://127.0.0.1:{port}"]
"""
    with lollms_process(tmp_path_factory.mktemp("looped"), config, port=port) as server:
        yield server


async def test_a_gateway_fronting_itself_lists_its_models_in_a_few_calls(
    looped: ServerProcess,
) -> None:
    """One listing makes at most MAX_HOPS nested calls (it made ~13,000 in 5 s, until the
    outermost call timed out), and answers at once."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        started = time.monotonic()
        async with http.get(f"{looped.url}/api/v1/list_models") as answer:
            listing = await answer.json()
        took = time.monotonic() - started
    assert answer.status == 200 and "echo" in listing["models"], listing
    assert took < 4, took
    assert 1 <= request_count(looped.log(), "GET", "/api/v1/list_models") <= MAX_HOPS + 2


async def test_a_request_through_too_many_servers_is_not_passed_on(
    looped: ServerProcess,
) -> None:
    """A generation for the node that already went through MAX_HOPS servers is a 508."""
    node = node_name(looped.url)
    payload = {"model": f"{node}/echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.post(
            f"{looped.url}/v1/chat/completions",
            json=payload,
            headers={"X-Lollms-Hops": str(MAX_HOPS)},
        ) as answer,
    ):
        error = (await answer.json())["error"]
    assert answer.status == 508 and error["code"] == "loop_detected", error
    assert node in error["message"]
