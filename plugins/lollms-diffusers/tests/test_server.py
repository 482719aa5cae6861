"""The plugin inside lollms-server: the lollms API, the OpenAI SDK, the data dir, disconnects."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from importlib import metadata
from typing import Any

import pytest
from lollms_diffusers import DiffusersBinding
from lollms_diffusers.runner import Cancelled
from openai import AsyncOpenAI
from PIL import Image

from lollms_server import keys

from .conftest import AUDIO, INSTANCE, SD, VIDEO, Client


def binding_of(client: Client) -> DiffusersBinding:
    """The app's diffusers instance."""
    binding = client.app[keys.REGISTRY].get(INSTANCE)
    assert isinstance(binding, DiffusersBinding)
    return binding


def body(kind: str, model: str, *media: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    """A POST /api/v1/generate body."""
    text = {"type": "text", "role": "user_prompt", "data": "a red circle"}
    return {
        "input_data": [text, *media],
        "binding_name": INSTANCE,
        "model_name": model,
        "generation_type": kind,
        "parameters": parameters,
    }


async def generate(client: Client, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The outputs of a non-streamed generate."""
    response = await client.post("/api/v1/generate", json=payload)
    assert response.status == 200, await response.text()
    outputs: list[dict[str, Any]] = (await response.json())["output"]
    return outputs


def image_item(data: bytes, role: str = "input_image") -> dict[str, Any]:
    """An image input_data item."""
    encoded = base64.b64encode(data).decode()
    return {"type": "image", "role": role, "data": encoded, "mime_type": "image/png"}


def sse(text: str) -> list[dict[str, Any]]:
    """The JSON events of an SSE body."""
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_the_entry_point_names_the_plugin_module() -> None:
    (entry,) = metadata.entry_points(group="lollms_server", name="diffusers")
    assert entry.value == "lollms_diffusers.plugin"


async def test_openai_sdk_images_generate_returns_a_png(client: Client) -> None:
    async with AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="x", max_retries=0, timeout=60
    ) as sdk:
        result = await sdk.images.generate(
            model=f"{INSTANCE}/{SD}",
            prompt="a red circle",
            size="64x64",
            n=2,
            response_format="b64_json",
            extra_body={"seed": 11, "steps": 2},
        )
        again = await sdk.images.generate(
            model=f"{INSTANCE}/{SD}",
            prompt="a red circle",
            size="64x64",
            n=2,
            extra_body={"seed": 11},
        )
    assert result.data is not None and len(result.data) == 2
    images = [base64.b64decode(item.b64_json or "") for item in result.data]
    for data in images:
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert Image.open(io.BytesIO(data)).size == (64, 64)
    assert images[0] != images[1]
    assert again.data is not None
    assert [base64.b64decode(item.b64_json or "") for item in again.data] == images


async def test_lollms_generate_every_type(client: Client) -> None:
    (image,) = await generate(client, body("tti", SD, seed=1))
    assert image["type"] == "image" and image["mime_type"] == "image/png"
    png = base64.b64decode(image["data"])
    assert image["metadata"]["seed"] == 1
    (edited,) = await generate(client, body("i2i", SD, image_item(png), seed=2, strength=0.6))
    assert edited["mime_type"] == "image/png" and base64.b64decode(edited["data"]) != png
    mask = image_item(png, "mask_image")
    (inpainted,) = await generate(client, body("i2i", SD, image_item(png), mask, seed=2))
    assert base64.b64decode(inpainted["data"]).startswith(b"\x89PNG")
    (video,) = await generate(client, body("ttv", VIDEO, width=32, height=32, seed=1))
    assert video["type"] == "video" and video["mime_type"] == "image/gif"
    with Image.open(io.BytesIO(base64.b64decode(video["data"]))) as gif:
        assert gif.n_frames == 4  # the instance's default_frames
    (sound,) = await generate(client, body("ttm", AUDIO, seed=1))
    assert sound["type"] == "audio" and sound["mime_type"] == "audio/wav"
    with wave.open(io.BytesIO(base64.b64decode(sound["data"]))) as reader:
        assert reader.getframerate() == 16000 and reader.getnframes() == 16000


async def test_streamed_generate_sends_progress_then_the_image(client: Client) -> None:
    payload = {**body("tti", SD, seed=1, steps=3), "stream": True}
    response = await client.post("/api/v1/generate", json=payload)
    assert response.status == 200
    events = sse(await response.text())
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "final" and "error" not in kinds
    steps = [e["metadata"]["step"] for e in events if "step" in e["metadata"]]
    assert steps == [1, 2, 3]
    (image,) = [o for o in events[-1]["content"] if o["type"] == "image"]
    assert base64.b64decode(image["data"]).startswith(b"\x89PNG")


async def test_models_are_listed_from_the_data_dir(client: Client) -> None:
    response = await client.get(f"/api/v1/list_available_models/{INSTANCE}")
    assert response.status == 200
    models = {m["name"]: m for m in (await response.json())["models"]}
    assert sorted(models) == [VIDEO, AUDIO, SD]
    assert models[SD]["family"] == "SD 1.x"
    assert {"tti", "i2i", "inpaint"} <= set(models[SD]["capabilities"])
    assert models[SD]["memory_bytes"] > 0 and models[SD]["details"]["format"] == "diffusers"


async def test_a_client_disconnect_stops_the_render(client: Client) -> None:
    binding = binding_of(client)
    await binding.load(SD)
    payload = {**body("tti", SD, seed=1, steps=40), "stream": True}
    response = await client.post("/api/v1/generate", json=payload)
    async for line in response.content:
        if line.startswith(b"data: ") and b'"step"' in line:
            break
    job = binding.last_job
    response.close()
    assert job is not None
    with pytest.raises(Cancelled):
        await asyncio.wait_for(job.future, 30)
    assert 1 <= job.steps_done < 40


async def test_the_server_answers_while_an_image_renders(client: Client) -> None:
    binding = binding_of(client)
    await binding.load(SD)
    payload = body("tti", SD, seed=1, steps=30)
    render = asyncio.create_task(client.post("/api/v1/generate", json=payload))
    for _ in range(6000):  # until the render is past its first step
        if binding.last_job is not None and binding.last_job.steps_done:
            break
        await asyncio.sleep(0.005)
    latencies = []
    while not render.done():
        started = time.perf_counter()
        health = await client.get("/api/v1/health")
        assert health.status == 200
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    assert (await render).status == 200
    assert latencies and max(latencies) < 0.5, latencies


async def test_an_input_that_is_no_image_is_a_415_naming_no_python_object(client: Client) -> None:
    """Bytes PIL cannot identify (a text file, a JPEG signature without a body) are a 415 that
    says what to send; before, it read `cannot identify image file <_io.BytesIO object at
    0x7f...>`, an address of the server's memory, on the lollms API and the image page."""
    for data in (b"hello, this is text", b"\xff\xd8\xff\xe0" + bytes(50)):
        payload = body("i2i", SD, image_item(data), steps=2, seed=1)
        response = await client.post("/api/v1/generate", json=payload)
        answer = await response.json()
        message = answer["error"]["message"]
        assert response.status == 415, answer
        assert "object at 0x" not in message and "BytesIO" not in message, message
        assert "input image" in message and "PNG" in message, message


async def test_the_server_books_follow_the_binding_max_loaded(client: Client) -> None:
    """With `max_loaded = 1` the binding holds one model; the server's books (status, the
    memory budget, `max_loaded_models`) must say the same. Before, the binding dropped the
    first model on its own when the second loaded, and /api/v1/status still listed both."""
    assert binding_of(client).settings.max_loaded == 1
    await generate(client, body("tti", SD, steps=2, seed=1, width=32, height=32))
    await generate(client, body("ttm", AUDIO, steps=2, seed=1, duration=0.5))
    assert binding_of(client).loaded_models() == [AUDIO]
    status = await (await client.get("/api/v1/status")).json()
    assert status["loaded"] == [f"{INSTANCE}/{AUDIO}"], status
    await generate(client, body("tti", SD, steps=2, seed=1, width=32, height=32))
    status = await (await client.get("/api/v1/status")).json()
    assert status["loaded"] == [f"{INSTANCE}/{SD}"], status


async def test_a_drain_lets_a_request_of_several_batches_finish(client: Client) -> None:
    """n=6 is two calls of the binding (max_images 4): a drain that starts during the first
    refused the second as a new generation (503 `draining`, four images thrown away)."""
    binding = binding_of(client)
    await binding.load(SD)
    payload = {"model": f"{INSTANCE}/{SD}", "prompt": "a red circle", "size": "64x64"}
    payload |= {"n": 6, "seed": 3, "steps": 30}
    render = asyncio.create_task(client.post("/v1/images/generations", json=payload))
    for _ in range(6000):  # until the first batch is past its first step
        if binding.last_job is not None and binding.last_job.steps_done:
            break
        await asyncio.sleep(0.005)
    client.app[keys.DRAIN].started_at = time.monotonic()  # what SIGTERM does first
    response = await render
    assert response.status == 200, await response.text()
    assert len((await response.json())["data"]) == 6
    refused = await client.post("/v1/images/generations", json={**payload, "n": 1})
    assert refused.status == 503  # a new request is still refused


async def test_a_request_of_several_batches_keeps_its_place_between_them(client: Client) -> None:
    """n=6 is two calls of the binding (max_images 4): between them the request gave its slot
    back and queued again, so a request that waited meanwhile ran first, and with the queue
    full (queue_size 1, that waiting request in it) the first request was a 503 after its
    first four images were made."""
    binding = binding_of(client)
    await binding.load(SD)
    client.app[keys.SCHEDULER].queue_size = 1  # before the model's lane is made
    payload = {"model": f"{INSTANCE}/{SD}", "prompt": "a red circle", "size": "64x64"}
    payload |= {"seed": 3, "steps": 20}
    first = asyncio.create_task(client.post("/v1/images/generations", json={**payload, "n": 6}))
    for _ in range(6000):  # until the first batch is past its first step
        if binding.last_job is not None and binding.last_job.steps_done:
            break
        await asyncio.sleep(0.005)
    second = asyncio.create_task(client.post("/v1/images/generations", json={**payload, "n": 1}))
    done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    assert first in done, "the waiting request ran between the batches"
    response = await first
    assert response.status == 200, await response.text()
    assert len((await response.json())["data"]) == 6
    assert (await second).status == 200


async def test_a_size_off_the_8_grid_is_refused_before_the_model_loads(client: Client) -> None:
    """A width that is no multiple of 8 is a 400 however the model is asked; before, it came
    only once the model had loaded (11 s the first time on a real model), and left it loaded."""
    openai = {"model": f"{INSTANCE}/{SD}", "prompt": "a red circle", "size": "100x64"}
    for path, payload in (
        ("/v1/images/generations", openai),
        ("/api/v1/generate", body("tti", SD, width=100, height=64, steps=2)),
    ):
        response = await client.post(path, json=payload)
        answer = await response.json()
        assert response.status == 400, answer
        assert "width" in answer["error"]["message"], answer
        assert "multiple of 8" in answer["error"]["message"], answer
    assert binding_of(client).loaded_models() == []
    status = await (await client.get("/api/v1/status")).json()
    assert status["loaded"] == [] and status["loading"] == [], status
