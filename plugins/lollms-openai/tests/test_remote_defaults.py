"""The openai binding's defaults against a real upstream lollms-server process: concurrency is
left to the server (a fifth concurrent request is not queued here), and a request without
max_tokens is sent the instance's default_max_tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lollms_openai import OpenAIBinding

from lollms_server.keys import REGISTRY, SCHEDULER
from lollms_server.testing import serve_binding
from lollms_server.testing.process import ServerProcess, lollms_process, toml_table
from lollms_server.testing.server import Client

CONCURRENT = 6
PROMPT = " ".join(f"w{i}" for i in range(12))  # 12 tokens x 100 ms upstream: ~1.2 s each


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A lollms-server whose `echo/slow` runs any number of slow generations at once."""
    config = toml_table(
        "bindings.echo", {"type": "echo", "delay_ms": 100, "max_concurrent": 100}
    ) + toml_table("defaults", {"ttt": "echo"})
    with lollms_process(tmp_path_factory.mktemp("upstream"), config) as running:
        yield running


async def stream_events(client: Client) -> list[dict[str, Any]]:
    """One streamed lollms generation through the openai instance; its SSE events."""
    body = {"input_data": [{"type": "text", "data": PROMPT}], "stream": True,
            "model_name": "echo/slow", "parameters": {"max_tokens": 64}}  # fmt: skip
    response = await client.post("/api/v1/generate", json=body)
    assert response.status == 200, await response.text()
    text = await response.text()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_the_fifth_concurrent_request_is_not_queued(
    upstream: ServerProcess, tmp_path: Path
) -> None:
    settings = {"base_url": f"{upstream.url}/v1", "api_key": "sk-local"}
    async with serve_binding(OpenAIBinding, "remote", settings, tmp_path / "data") as client:
        answers = await asyncio.gather(*(stream_events(client) for _ in range(CONCURRENT)))
        lane = client.app[SCHEDULER].lanes[("remote", "echo/slow")]
    queued = [e for events in answers for e in events if "queue_position" in e.get("metadata", {})]
    assert queued == [], queued
    assert all(events[-1]["type"] == "final" for events in answers)
    assert lane.capacity >= 1000


async def test_a_request_without_max_tokens_gets_the_default_cap(
    upstream: ServerProcess, tmp_path: Path
) -> None:
    settings = {"base_url": f"{upstream.url}/v1", "api_key": "sk-local"}
    async with serve_binding(OpenAIBinding, "remote", settings, tmp_path / "data") as client:
        client.app[REGISTRY].get("remote").default_max_tokens = 4
        body = {"model": "remote/echo/echo", "messages": [{"role": "user", "content": PROMPT}]}
        answer = await (await client.post("/v1/chat/completions", json=body)).json()
    assert answer["choices"][0]["finish_reason"] == "length", answer
    assert answer["usage"]["completion_tokens"] == 4
