"""Embeddings and the tokenizer routes through a route whose first node is gone: the next
target serves them, as it serves generations, and the answer names it (they went to the
route's first target alone: a 503 for as long as that node was down, the next node idle)."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from lollms_server.testing import ServerProcess, lollms_process

ECHO = '[bindings.echo]\ntype = "echo"\n'

CALLS = [  # (path, body for a model name, where the answer names the model that served)
    ("/v1/embeddings", lambda m: {"model": m, "input": ["a", "b"]}, "model"),
    ("/api/embed", lambda m: {"model": m, "input": ["a"]}, "model"),
    ("/api/v1/tokenize", lambda m: {"model_name": m, "text": "ab"}, "model"),
    ("/api/v1/count_tokens", lambda m: {"model_name": m, "text": "ab"}, "model"),
    ("/api/v1/detokenize", lambda m: {"model_name": m, "tokens": [97, 98]}, "model"),
    ("/lollms/v1/tokenize", lambda m: {"model": m, "text": "ab"}, "model"),
    ("/lollms/v1/detokenize", lambda m: {"model": m, "tokens": [97, 98]}, "model"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A gateway over two echo nodes; the first is killed once the gateway listed both."""
    with (
        lollms_process(tmp_path_factory.mktemp("gone"), ECHO) as gone,
        lollms_process(tmp_path_factory.mktemp("alive"), ECHO) as alive,
    ):
        config = "".join(
            f'[bindings.{name}]\ntype = "lollms"\nbase_url = "{node.url}"\n\n'
            for name, node in (("gone", gone), ("alive", alive))
        )
        config += "[routes]\n"
        config += '"fleet-echo" = {fleet = true, model = "echo/echo"}\n'
        config += '"ordered" = ["gone/echo/echo", "alive/echo/echo"]\n'
        with lollms_process(tmp_path_factory.mktemp("gw"), config) as gateway:
            with urllib.request.urlopen(f"{gateway.url}/v1/models", timeout=30) as listed:
                assert b"gone/echo/echo" in listed.read()  # both nodes listed while they run
            gone.process.send_signal(signal.SIGKILL)
            gone.process.wait(15)
            yield gateway


@pytest.mark.parametrize("route", ["ordered", "fleet-echo"])
@pytest.mark.parametrize(("path", "body", "named"), CALLS, ids=[c[0] for c in CALLS])
async def test_the_next_target_serves_when_the_first_node_is_gone(
    gateway: ServerProcess, route: str, path: str, body: Any, named: str | None
) -> None:
    """Each call answers 200 from the live node (twice: the second after the first failure
    was seen), naming it where the answer names a model."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for _ in range(2):
            async with http.post(f"{gateway.url}{path}", json=body(route)) as answer:
                text = await answer.text()
            assert answer.status == 200, text
            if named is not None:
                assert json.loads(text)[named].startswith("alive/"), text
