"""A generation cancelled while its binding works in a thread (`asyncio.to_thread`, which runs
on the loop's default executor) keeps its lane's slot until that thread ends: a thread cannot be
stopped, and status, queue depth and unloads must not call the model idle while it works."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from aiohttp.test_utils import TestClient

from lollms_server import keys
from lollms_server.bindings import GenerationRequest, Output


async def depth(client: TestClient[Any, Any]) -> dict[str, int]:
    """`queue_depth` of /api/v1/status."""
    answer: dict[str, int] = (await (await client.get("/api/v1/status")).json())["queue_depth"]
    return answer


async def test_a_cancelled_generation_holds_its_slot_while_its_thread_works(
    client: TestClient[Any, Any], monkeypatch: Any
) -> None:
    """Before, the disconnect gave the slot back at once: status said idle (and an unload
    went through) while the echo binding's media thread still ran."""
    binding: Any = client.app[keys.REGISTRY].get("echo")
    media, entered, release = binding._media, threading.Event(), threading.Event()

    def slow_media(request: GenerationRequest) -> Output:
        entered.set()
        release.wait(30)
        return media(request)  # type: ignore[no-any-return]

    monkeypatch.setattr(binding, "_media", slow_media)
    body = {"model": "echo/echo", "prompt": "a red circle", "size": "64x64"}
    render = asyncio.create_task(client.post("/v1/images/generations", json=body))
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        render.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await render
        await asyncio.sleep(0.2)  # the server saw the disconnect
        assert await depth(client) == {"echo/echo": 1}
        unload = {"binding_name": "echo", "model_name": "echo"}
        refused = await client.post("/api/v1/unload_model", json=unload)
        assert refused.status == 409, await refused.text()
    finally:
        release.set()
    started = time.monotonic()
    while await depth(client):
        assert time.monotonic() - started < 10
        await asyncio.sleep(0.02)
