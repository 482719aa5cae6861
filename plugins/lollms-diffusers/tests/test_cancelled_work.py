"""A generation cancelled during work that cannot stop (the VAE decode runs to its end in the
worker thread) keeps its slot until that work ends: status, queue depth and unloads say so."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientResponse
from lollms_diffusers import DiffusersBinding

from lollms_server import keys

from .conftest import INSTANCE, SD, Client

LANE = f"{INSTANCE}/{SD}"
IMAGE = {"model": LANE, "prompt": "a red circle", "size": "64x64", "steps": 2, "seed": 1}


@contextlib.contextmanager
def held_decode(binding: DiffusersBinding) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The loaded model's VAE decode waits (in the worker thread) until `release` is set, as a
    512x512 decode takes seconds; `entered` is set once a decode started."""
    vae = binding.loaded_pipeline(SD).vae
    decode, entered, release = vae.decode, threading.Event(), threading.Event()

    def waiting_decode(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(60)
        return decode(*args, **kwargs)

    vae.decode = waiting_decode
    try:
        yield entered, release
    finally:
        release.set()
        vae.decode = decode


async def depth(client: Client) -> dict[str, int]:
    """`queue_depth` of /api/v1/status."""
    status = await (await client.get("/api/v1/status")).json()
    answer: dict[str, int] = status["queue_depth"]
    return answer


async def until_idle(client: Client, limit_s: float = 30.0) -> float:
    """Seconds until the status shows no lane busy."""
    started = time.monotonic()
    while await depth(client):
        assert time.monotonic() - started < limit_s, await depth(client)
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def cancelled(client: Client, how: str) -> ClientResponse | None:
    """An image request that leaves during the decode: the client disconnects (from a whole
    answer or a stream), or the server's time limit passes (its 504)."""
    if how == "stream":  # a lollms stream whose reader leaves during the decode
        text = {"type": "text", "role": "user_prompt", "data": "a red circle"}
        payload = {"input_data": [text], "binding_name": INSTANCE, "model_name": SD}
        payload |= {"generation_type": "tti", "stream": True, "parameters": {"steps": 2}}
        streamed = await client.post("/api/v1/generate", json=payload)
        await asyncio.sleep(0.5)
        streamed.close()
        await asyncio.sleep(0.2)
        return None
    render = asyncio.create_task(client.post("/v1/images/generations", json=IMAGE))
    if how == "timeout":
        response = await render
        assert response.status == 504, await response.text()
        return response
    await asyncio.sleep(0.5)
    render.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await render
    await asyncio.sleep(0.2)  # the server saw the disconnect
    return None


@pytest.mark.parametrize("how", ["disconnect", "timeout", "stream"])
async def test_a_cancelled_image_holds_its_slot_until_its_decode_ends(
    client: Client, how: str
) -> None:
    """Before, the slot was given back at once: status said idle, an unload went through while
    the decode ran, and the next request was admitted as if the worker were free."""
    binding = client.app[keys.REGISTRY].get(INSTANCE)
    assert isinstance(binding, DiffusersBinding)
    await binding.load(SD)
    client.app[keys.GENERATION].timeout_s = 1.5 if how == "timeout" else 60.0
    with held_decode(binding) as (entered, release):
        await cancelled(client, how)
        assert entered.is_set()
        assert await depth(client) == {LANE: 1}  # the decode still runs
        unload = {"binding_name": INSTANCE, "model_name": SD}
        refused = await client.post("/api/v1/unload_model", json=unload)
        assert refused.status == 409, await refused.text()
        client.app[keys.GENERATION].timeout_s = 60.0
        entered.clear()
        following = asyncio.create_task(client.post("/v1/images/generations", json=IMAGE))
        await asyncio.sleep(0.3)
        assert await depth(client) == {LANE: 2}  # one running, the next one waiting
        assert not entered.is_set()  # the next one has not started
        release.set()
        answer = await following
        assert answer.status == 200, await answer.text()
    await until_idle(client)
    assert SD in binding.loaded_models()
