"""LoRAs, ControlNet and upscaling through the OpenAI image routes (extensions), one app."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from PIL import Image

from .conftest import CONTROL, INSTANCE, SD, UPSCALER, Client, app_client, tiny_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")
STEER = {"model": CONTROL, "conditioning_scale": 0.8}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(
    tiny_models: Path, adapters_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    """One app for the module: the tiny models, the LoRAs, the ControlNet, the upscaler."""
    extra = {
        "tti/loras": adapters_root / "loras",
        "tti/controlnets": adapters_root / "controlnets",
        f"i2i/{UPSCALER}": adapters_root / UPSCALER,
    }
    data = tmp_path_factory.mktemp("openai-workflows") / "data"
    async with app_client(tiny_models, tiny_settings(tiny_models), data, extra) as client:
        yield client


async def images(api: Client, **fields: Any) -> list[bytes]:
    """The PNGs of a /v1/images/generations call (which must succeed)."""
    payload = {"model": f"{INSTANCE}/{SD}", "prompt": "a red circle", "size": "64x64", **fields}
    response = await api.post("/v1/images/generations", json=payload)
    assert response.status == 200, await response.text()
    return [base64.b64decode(item["b64_json"]) for item in (await response.json())["data"]]


async def edit(api: Client, model: str, image: bytes, **fields: Any) -> aiohttp.ClientResponse:
    """A multipart /v1/images/edits call; dicts and lists go as JSON text, files as parts."""
    form = aiohttp.FormData()
    form.add_field("model", f"{INSTANCE}/{model}")
    form.add_field("prompt", "a red circle")
    form.add_field("image", image, filename="in.png", content_type="image/png")
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.png", content_type="image/png")
        else:
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            form.add_field(name, text)
    return await api.post("/v1/images/edits", data=form)


async def edited(api: Client, model: str, image: bytes, **fields: Any) -> bytes:
    """The PNG of an edit (which must succeed)."""
    response = await edit(api, model, image, **fields)
    assert response.status == 200, await response.text()
    return base64.b64decode((await response.json())["data"][0]["b64_json"])


async def test_openai_sdk_generations_take_loras_as_an_extension(api: Client) -> None:
    async with AsyncOpenAI(
        base_url=str(api.make_url("/v1")), api_key="x", max_retries=0, timeout=60
    ) as sdk:

        async def generate(**extra: Any) -> bytes:
            result = await sdk.images.generate(
                model=f"{INSTANCE}/{SD}", prompt="a red circle", size="64x64", extra_body=extra
            )
            assert result.data is not None
            return base64.b64decode(result.data[0].b64_json or "")

        lora = [{"name": "style", "scale": 0.9}]
        styled = await generate(seed=3, loras=lora)
        assert styled == await generate(seed=3, loras=lora) != await generate(seed=3)
    response = await api.post(
        "/v1/images/generations",
        json={"model": f"{INSTANCE}/{SD}", "prompt": "x", "loras": [{"name": "xl-style"}]},
    )
    text = await response.text()
    assert response.status == 400 and "xl-style" in text and SD in text, text


async def test_generations_take_a_controlnet_and_its_image(api: Client) -> None:
    (source,) = await images(api, seed=9)
    control = base64.b64encode(source).decode()
    steered = await images(api, seed=4, controlnet=STEER, controlnet_image=control)
    data_url = f"data:image/png;base64,{control}"
    assert steered == await images(api, seed=4, controlnet=STEER, controlnet_image=data_url)
    assert steered != await images(api, seed=4)
    for fields, status, word in (
        ({"controlnet": STEER}, 400, "controlnet_image"),
        ({"controlnet": {**STEER, "model": "nope"}, "controlnet_image": control}, 400, "nope"),
        ({"controlnet": {**STEER, "end": 3}, "controlnet_image": control}, 400, "end"),
        ({"controlnet": STEER, "controlnet_image": "not base64!"}, 400, "controlnet_image"),
        ({"controlnet": STEER, "controlnet_image": "aGVsbG8="}, 415, "controlnet_image"),
    ):
        payload = {"model": f"{INSTANCE}/{SD}", "prompt": "x", **fields}
        response = await api.post("/v1/images/generations", json=payload)
        text = await response.text()
        assert response.status == status and word in text, (fields, text)


async def test_edits_take_a_controlnet_loras_and_upscale(api: Client) -> None:
    (source,) = await images(api, seed=9)
    steer = {"seed": "4", "strength": "0.6", "controlnet_image": source}
    # the SDK's nested-object form keys (controlnet[model]) and JSON text both work
    first = await edited(api, SD, source, **steer, **{"controlnet[model]": CONTROL})
    again = await edited(api, SD, source, **steer, controlnet=STEER | {"conditioning_scale": 1})
    plain = await edited(api, SD, source, seed="4", strength="0.6")
    assert first == again != plain
    styled = await edited(api, SD, source, seed="4", strength="0.6", loras=[{"name": "style"}])
    assert styled not in (plain, first)
    big = await edited(api, UPSCALER, source, seed="2", upscale="4")
    assert Image.open(io.BytesIO(big)).size == (256, 256)
    assert big == await edited(api, UPSCALER, source, seed="2", upscale="4")
    for model, fields, status, word in (
        (SD, {"upscale": "4"}, 400, "not an upscaler"),
        (UPSCALER, {"upscale": "2"}, 400, "upscale"),
        (SD, {"loras": "[{"}, 400, "loras"),
        (SD, {"controlnet[model]": CONTROL}, 400, "controlnet_image"),
    ):
        response = await edit(api, model, source, **fields)
        text = await response.text()
        assert response.status == status and word in text, (fields, text)


def png(image: Image.Image) -> bytes:
    """An image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_more_images_than_one_batch_are_reproducible_with_a_seed(api: Client) -> None:
    # max_images is 4: the last two images come from a second call, which must use the seed too
    first = await images(api, n=6, seed=5)
    assert len(first) == 6 and len(set(first)) == 6
    assert await images(api, n=6, seed=5) == first
    assert len(await images(api, n=6, seed=2**63 - 1)) == 6  # the seeds wrap, as in a batch


async def test_an_openai_mask_repaints_where_it_is_transparent(api: Client) -> None:
    # OpenAI's mask: the image with transparent pixels (alpha 0) where it must be edited
    (source,) = await images(api, seed=1)
    hole = (16, 16, 48, 48)
    white = Image.new("L", (64, 64), 0)
    white.paste(255, hole)
    cut = Image.open(io.BytesIO(source)).convert("RGBA")
    cut.paste((0, 0, 0, 0), hole)
    wanted = await edited(api, SD, source, mask=png(white), seed="2", strength="0.9")
    assert await edited(api, SD, source, mask=png(cut), seed="2", strength="0.9") == wanted
    opaque = await edited(api, SD, source, mask=png(white.convert("RGBA")), seed="2")
    assert opaque == await edited(api, SD, source, mask=png(white), seed="2")


async def test_a_mask_of_another_shape_is_refused_not_stretched(api: Client) -> None:
    """A 32x48 mask on a 64x64 image was stretched over it (the region to repaint moved); it is
    a 400 naming both sizes. A mask of the image's shape at another scale still works."""
    (source,) = await images(api, seed=1)
    response = await edit(api, SD, source, mask=png(Image.new("L", (32, 48), 255)))
    error = (await response.json())["error"]
    assert response.status == 400 and "32x48" in error["message"], error
    assert "64x64" in error["message"]
    assert await edited(api, SD, source, mask=png(Image.new("L", (32, 32), 255)), seed="2")


async def test_a_second_image_or_mask_is_refused_not_dropped(api: Client) -> None:
    (source,) = await images(api, seed=1)
    form = aiohttp.FormData()
    form.add_field("model", f"{INSTANCE}/{SD}")
    form.add_field("prompt", "a red circle")
    for _ in range(2):
        form.add_field("image", source, filename="in.png", content_type="image/png")
    response = await api.post("/v1/images/edits", data=form)
    text = await response.text()
    assert response.status == 400 and "one image with role input_image; got 2" in text, text
    item = {"type": "image", "data": base64.b64encode(source).decode(), "mime_type": "image/png"}
    roles = ("input_image", "mask_image", "mask_image")
    body = {
        "generation_type": "i2i",
        "model_name": f"{INSTANCE}/{SD}",
        "input_data": [{"type": "text", "role": "user_prompt", "data": "x"}]
        + [{**item, "role": role} for role in roles],
    }
    response = await api.post("/api/v1/generate", json=body)
    text = await response.text()
    assert response.status == 400 and "one image with role mask_image; got 2" in text, text


async def test_a_transparent_background_is_refused_not_ignored(api: Client) -> None:
    payload = {"model": f"{INSTANCE}/{SD}", "prompt": "x", "size": "64x64"}
    response = await api.post(
        "/v1/images/generations", json=payload | {"background": "transparent"}
    )
    error = (await response.json())["error"]
    assert response.status == 400 and error["param"] == "background", error
    for kept in ("opaque", "auto"):
        assert len(await images(api, background=kept)) == 1
