"""The end of a drain, in process: the generations still running are stopped and each ends the
way its face reports an error (an error line or partial in a stream already started, else 503
`draining` with Retry-After); a generation queued behind them too. The process tests are in
test_drain_process.py."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient
from test_scheduler import config, slow
from test_web_playground import parse_sse, start_chat

from lollms_server.keys import DRAIN, SCHEDULER

Client = TestClient[Any, Any]


def end_drain(client: Client) -> None:
    """What the drain does at `drain_timeout_s`: stop the generations still running."""
    drain = client.server.app[DRAIN]
    drain.started_at = time.monotonic()
    drain.stop_running()


async def test_an_ollama_stream_ends_with_its_error_line(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))
    body = {"model": "echo/slow", "prompt": " ".join(["word"] * 50), "stream": True}
    response = await client.post("/api/generate", json=body)
    assert json.loads(await response.content.readline())["done"] is False
    end_drain(client)
    last = json.loads((await response.text()).splitlines()[-1])
    assert "shutting down" in last["error"] and "done" not in last, last
    assert not client.server.app[DRAIN].running


async def test_a_page_stream_gets_the_failure_partial(make_client: Any, make_config: Any) -> None:
    client: Client = await make_client(config(make_config))
    url = await start_chat(client, prompt=" ".join(["word"] * 50), model="echo/slow")
    response = await client.get(url)
    await response.content.readany()
    end_drain(client)
    events = parse_sse(await response.text())
    assert [name for name, _ in events][-2:] == ["failure", "done"], events
    assert "shutting down" in events[-2][1]


async def test_unanswered_and_queued_generations_get_503(
    make_client: Any, make_config: Any
) -> None:
    client: Client = await make_client(config(make_config))  # echo: one generation at a time
    running = asyncio.ensure_future(client.post("/api/v1/generate", json=slow(50)))
    queued = asyncio.ensure_future(client.post("/api/v1/generate", json=slow(2, stream=True)))
    lanes = client.server.app[SCHEDULER].lanes
    for _ in range(150):  # up to 3 s for the second to reach the queue
        if ("echo", "slow") in lanes and lanes["echo", "slow"].waiting:
            break
        await asyncio.sleep(0.02)
    assert lanes["echo", "slow"].waiting
    end_drain(client)
    for response in (await running, await queued):
        body = await response.json()
        assert response.status == 503 and int(response.headers["Retry-After"]) >= 1, body
        assert body["error"]["type"] == "draining" and "shutting down" in body["detail"], body
    assert not client.server.app[DRAIN].running
