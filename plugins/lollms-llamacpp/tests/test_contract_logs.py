"""The llama.cpp lines the binding logs name no request but the one running (none at all)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from lollms_llamacpp import LlamaCppBinding

from lollms_server.logs import JsonFormatter
from lollms_server.testing import serve_binding, within
from lollms_server.testing.server import Client

from .conftest import TINY

TIMEOUT = 60.0


class Lines(logging.Handler):
    """Every record as the server's JSON log line, formatted when it is logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's JSON line."""
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def worker_lines() -> Iterator[Lines]:
    """The lines of the `local` instance's logger, llama.cpp's (debug) included."""
    logger = logging.getLogger("lollms_llamacpp.local")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest_asyncio.fixture
async def client(models_dir: Path, tmp_path: Path) -> AsyncIterator[Client]:
    """The app serving the tiny model as `local/tiny`."""
    settings = {"models_folders": [str(models_dir)], "n_ctx": 512, "n_parallel": 1}
    async with serve_binding(
        LlamaCppBinding, "local", settings, tmp_path / "data", default_model=TINY
    ) as served:
        yield served


async def chat(client: Client, request_id: str) -> None:
    """A short chat sent with `request_id`."""
    body = {"model": f"local/{TINY}", "messages": [{"role": "user", "content": "hi"}]}
    response = await within(
        TIMEOUT,
        client.post(
            "/v1/chat/completions",
            json={**body, "max_tokens": 4},
            headers={"X-Request-Id": request_id},
        ),
        "chat",
    )
    assert response.status == 200, await response.text()
    await response.read()


async def test_worker_lines_keep_no_request_id(client: Client, worker_lines: Lines) -> None:
    """The request that loads the model names only its own lines: llama.cpp's lines logged
    after it ended (here while a second request runs) do not carry its id."""
    await chat(client, "loads-the-model")
    ended = len(worker_lines.lines)
    assert any(line.get("request_id") == "loads-the-model" for line in worker_lines.lines)
    await chat(client, "second")
    await asyncio.sleep(0.3)  # the worker's last lines of the second request
    later = [line for line in worker_lines.lines[ended:] if f"[{TINY}]" in str(line["message"])]
    assert later, "llama.cpp logged nothing after the first request"
    assert not [line for line in later if line.get("request_id") == "loads-the-model"], later
