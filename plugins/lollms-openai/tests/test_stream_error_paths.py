"""An upstream's error inside a stream names a server file: a user key reads its name only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from lollms_openai import OpenAIBinding

from lollms_server.config_sections import ResilienceConfig
from lollms_server.keys import KEYSTORE
from lollms_server.testing import serve_binding

WHERE = "/srv/backend/models/big.gguf"


async def _chat(request: web.Request) -> web.StreamResponse:
    """One token, then an error event naming a file of the backend's machine."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    delta = {"choices": [{"index": 0, "delta": {"content": "one"}, "finish_reason": None}]}
    await response.write(f"data: {json.dumps(delta)}\n\n".encode())
    error = {"error": {"message": f"worker crashed reading {WHERE}"}}
    await response.write(f"data: {json.dumps(error)}\n\n".encode())
    return response


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[str]:
    """A real aiohttp upstream whose streams break after their first token."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    async with TestServer(app) as server:
        yield str(server.make_url("/v1"))


async def test_a_stream_error_names_no_server_file_to_a_user_key(
    upstream: str, tmp_path: Path
) -> None:
    """Each face's stream `error` event (OpenAI SSE, Responses SSE, Ollama NDJSON, lollms SSE)
    after the first token: a user key reads `big.gguf`, an admin key the whole path."""
    settings = {"base_url": upstream, "models": ["m"], "check_models": False}
    resilience = ResilienceConfig(failure_threshold=100, health_interval_s=0)  # 8 failures
    async with serve_binding(
        OpenAIBinding, "up", settings, tmp_path / "data", resilience=resilience
    ) as client:
        store = client.server.app[KEYSTORE]
        keys = {"user": (await store.create("u", "user"))[0]}
        keys["admin"] = (await store.create("a", "admin"))[0]
        chat = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}]}
        calls = {
            "openai": ("/v1/chat/completions", {**chat, "stream": True}),
            "responses": ("/v1/responses", {"model": "up/m", "input": "hi", "stream": True}),
            "ollama": ("/api/chat", chat),
            "lollms": ("/api/v1/generate", {"binding_name": "up", "model_name": "m",
                       "stream": True, "input_data": [{"type": "text", "data": "hi"}]}),
        }  # fmt: skip
        for who, key in keys.items():
            for face, (path, body) in calls.items():
                answer = await client.post(path, json=body, headers={"X-API-Key": key})
                text = await answer.text()
                assert answer.status == 200 and "one" in text and "crashed" in text, (face, text)
                assert (WHERE in text) is (who == "admin"), (who, face, text)
                assert "reading big.gguf" in text or who == "admin", (face, text)
