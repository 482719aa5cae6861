"""Advanced image workflows (issue 19): input roles, LoRAs, ControlNet, upscaling, SDXL."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lollms_diffusers import DiffusersBinding
from PIL import Image

from lollms_server.errors import InvalidRequest
from lollms_server.testing import started_binding

from .conftest import (
    AUDIO,
    CONTROL,
    INSTANCE,
    SD,
    SDXL,
    UPSCALER,
    VIDEO,
    Client,
    image_input,
    make_request,
    tiny_settings,
)
from .test_generation import outputs, picture
from .test_server import binding_of, body, generate, image_item

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest_asyncio.fixture
async def adapted(tiny_models: Path, adapters_root: Path) -> AsyncIterator[DiffusersBinding]:
    """A started instance over the tiny models and the adapters folder."""
    settings = tiny_settings(tiny_models)
    settings["models_folders"] = [str(tiny_models), str(adapters_root)]
    async with started_binding(DiffusersBinding, INSTANCE, settings) as started:
        assert isinstance(started, DiffusersBinding)
        yield started


def refused(call: Any, *words: str) -> None:
    """`call()` raises InvalidRequest whose message names every word."""
    with pytest.raises(InvalidRequest) as caught:
        call()
    for word in words:
        assert word in caught.value.message, caught.value.message


async def test_a_role_the_binding_cannot_honour_is_refused(binding: DiffusersBinding) -> None:
    (source,) = await outputs(binding, "tti", seed=1)
    style = make_request("ttv", VIDEO, inputs=(image_input(source.data, "style_reference"),))
    refused(lambda: binding.check_input_roles(style), "style_reference", "ttv")
    tti = make_request("tti", inputs=(image_input(source.data),))
    refused(lambda: binding.check_input_roles(tti), "input_image", "tti")
    binding.check_input_roles(make_request("i2i", inputs=(image_input(source.data),)))


async def test_api_refuses_an_unhonoured_role_with_a_400_naming_it(client: Client) -> None:
    (image,) = await generate(client, body("tti", SD, seed=1))
    png = base64.b64decode(image["data"])
    payload = body("ttv", VIDEO, image_item(png, "style_reference"), seed=1)
    response = await client.post("/api/v1/generate", json=payload)
    assert response.status == 400
    assert "style_reference" in await response.text()


async def test_loras_are_listed_with_their_family_on_the_models_they_fit(
    adapted: DiffusersBinding,
) -> None:
    models = {info.name: info for info in await adapted.list_models()}
    assert models[SD].details["loras"] == [{"name": "style", "family": "SD 1.x"}]
    assert "loras" not in models[AUDIO].details
    assert not any(name.startswith("loras") for name in models)


async def test_a_request_lora_changes_the_image_deterministically(
    adapted: DiffusersBinding,
) -> None:
    (plain,) = await outputs(adapted, "tti", seed=5)
    (styled,) = await outputs(adapted, "tti", seed=5, loras=[{"name": "style", "scale": 1.0}])
    (again,) = await outputs(adapted, "tti", seed=5, loras=[{"name": "style", "scale": 1.0}])
    (half,) = await outputs(adapted, "tti", seed=5, loras=[{"name": "style", "scale": 0.5}])
    (plain_again,) = await outputs(adapted, "tti", seed=5)
    assert styled.data == again.data
    assert len({plain.data, styled.data, half.data}) == 3
    assert plain_again.data == plain.data  # the LoRA is off again for a request without it


@pytest.mark.parametrize(
    ("model", "loras", "words"),
    [
        (SD, [{"name": "xl-style"}], ("xl-style", "SDXL", SD, "SD 1.x")),
        (AUDIO, [{"name": "style"}], ("style", AUDIO)),
        (SD, [{"name": "missing"}], ("missing", "style")),
        (SD, [{"name": "style", "scale": "x"}], ("scale",)),
        (SD, [{"name": "style", "weight": 1}], ("weight",)),
        (SD, "style", ("loras",)),
    ],
)
async def test_bad_loras_are_refused_naming_them(
    adapted: DiffusersBinding, model: str, loras: Any, words: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await adapted.generate(make_request("tti" if model == SD else "ttm", model, loras=loras))
    for word in words:
        assert word in caught.value.message, caught.value.message


async def test_api_loras_same_seed_same_bytes_and_a_400_naming_a_misfit(
    client: Client, adapters_root: Path
) -> None:
    folder = binding_of(client).folders()[0]
    (folder / "loras").symlink_to(adapters_root / "loras", target_is_directory=True)
    lora = [{"name": "style", "scale": 0.8}]
    (first,) = await generate(client, body("tti", SD, seed=3, loras=lora))
    (again,) = await generate(client, body("tti", SD, seed=3, loras=lora))
    (plain,) = await generate(client, body("tti", SD, seed=3))
    assert first["data"] == again["data"] != plain["data"]
    payload = body("tti", SD, seed=3, loras=[{"name": "xl-style"}])
    response = await client.post("/api/v1/generate", json=payload)
    text = await response.text()
    assert response.status == 400 and "xl-style" in text and SD in text, text


async def control_source(binding: DiffusersBinding) -> bytes:
    """A picture to steer with (the tiny SD's own output)."""
    (source,) = await outputs(binding, "tti", seed=9, width=64, height=64)
    return source.data


async def test_controlnet_steers_text_to_image_and_image_to_image(
    adapted: DiffusersBinding,
) -> None:
    models = {info.name: info for info in await adapted.list_models()}
    assert models[SD].details["controlnets"] == [{"name": CONTROL, "family": "SD 1.x"}]
    control = image_input(await control_source(adapted), "controlnet_image")
    steer = {"model": CONTROL, "conditioning_scale": 1.0, "start": 0.0, "end": 1.0}
    (plain,) = await outputs(adapted, "tti", seed=4)
    (steered,) = await outputs(adapted, "tti", seed=4, inputs=(control,), controlnet=steer)
    (again,) = await outputs(adapted, "tti", seed=4, inputs=(control,), controlnet=steer)
    assert steered.data == again.data != plain.data
    source = image_input(plain.data)
    (edited,) = await outputs(adapted, "i2i", seed=4, inputs=(source, control), controlnet=steer)
    (unsteered,) = await outputs(adapted, "i2i", seed=4, inputs=(source,))
    assert edited.data != unsteered.data


@pytest.mark.parametrize(
    ("model", "with_image", "steer", "words"),
    [
        (SD, False, {"model": CONTROL}, ("controlnet_image",)),
        (SD, True, None, ("parameters.controlnet", CONTROL)),
        (SD, True, {"model": "nope"}, ("nope", CONTROL)),
        (SD, True, {"model": CONTROL, "start": 0.8, "end": 0.2}, ("start", "end")),
        (AUDIO, True, {"model": CONTROL}, (CONTROL, AUDIO)),
    ],
)
async def test_bad_controlnet_requests_are_refused_naming_them(
    adapted: DiffusersBinding, model: str, with_image: bool, steer: Any, words: tuple[str, ...]
) -> None:
    inputs = (image_input(PNG_1X1, "controlnet_image"),) if with_image else ()
    kind = "tti" if model == SD else "ttm"
    parameters = {} if steer is None else {"controlnet": steer}
    with pytest.raises(InvalidRequest) as caught:
        await adapted.generate(make_request(kind, model, inputs=inputs, **parameters))
    for word in words:
        assert word in caught.value.message, caught.value.message


async def test_api_controlnet_same_seed_same_bytes_and_400s(
    client: Client, adapters_root: Path
) -> None:
    folder = binding_of(client).folders()[0]
    (folder / "controlnets").symlink_to(adapters_root / "controlnets", target_is_directory=True)
    (image,) = await generate(client, body("tti", SD, seed=1))
    control = image_item(base64.b64decode(image["data"]), "controlnet_image")
    steer = {"model": CONTROL, "conditioning_scale": 0.7}
    (first,) = await generate(client, body("tti", SD, control, seed=2, controlnet=steer))
    (again,) = await generate(client, body("tti", SD, control, seed=2, controlnet=steer))
    (plain,) = await generate(client, body("tti", SD, seed=2))
    assert first["data"] == again["data"] != plain["data"]
    for payload, word in (
        (body("tti", SD, seed=2, controlnet=steer), "controlnet_image"),
        (body("tti", SD, control, seed=2, controlnet={"model": CONTROL, "end": 3}), "end"),
    ):
        response = await client.post("/api/v1/generate", json=payload)
        text = await response.text()
        assert response.status in (400, 422) and word in text, text


async def test_an_upscaler_model_makes_i2i_four_times_larger(adapted: DiffusersBinding) -> None:
    models = {info.name: info for info in await adapted.list_models()}
    assert models[UPSCALER].family == "SD x4 upscaler" and "i2i" in models[UPSCALER].capabilities
    source = image_input(await control_source(adapted))  # 64x64
    (big,) = await outputs(adapted, "i2i", UPSCALER, inputs=(source,), seed=1, upscale=4)
    (again,) = await outputs(adapted, "i2i", UPSCALER, inputs=(source,), seed=1)
    assert picture(big.data).size == (256, 256)
    assert big.data == again.data
    buffer = io.BytesIO()
    Image.new("RGB", (520, 520), "white").save(buffer, format="PNG")
    large = image_input(buffer.getvalue())  # 4x: 2080 px, over max_size 2048
    with pytest.raises(InvalidRequest) as caught:
        await adapted.generate(make_request("i2i", UPSCALER, inputs=(large,)))
    assert "2080x2080" in caught.value.message and "max_size 2048" in caught.value.message
    for model, kind, parameters, words in (
        (UPSCALER, "i2i", {"upscale": 2}, ("upscale", "4", "2")),
        (SD, "i2i", {"upscale": 4}, ("upscale", SD, "not an upscaler")),
        (UPSCALER, "tti", {}, (UPSCALER, "tti")),
    ):
        with pytest.raises(InvalidRequest) as caught:
            inputs = (source,) if kind == "i2i" else ()
            await adapted.generate(make_request(kind, model, inputs=inputs, **parameters))
        for word in words:
            assert word in caught.value.message, caught.value.message


async def test_api_upscales_by_four_with_the_same_bytes_for_the_same_seed(
    client: Client, adapters_root: Path
) -> None:
    folder = binding_of(client).folders()[1]
    (folder / UPSCALER).symlink_to(adapters_root / UPSCALER, target_is_directory=True)
    (image,) = await generate(client, body("tti", SD, seed=1, width=64, height=64))
    source = image_item(base64.b64decode(image["data"]))
    (big,) = await generate(client, body("i2i", UPSCALER, source, seed=2, upscale=4))
    (again,) = await generate(client, body("i2i", UPSCALER, source, seed=2, upscale=4))
    assert big["data"] == again["data"]
    assert Image.open(io.BytesIO(base64.b64decode(big["data"]))).size == (256, 256)
    response = await client.post("/api/v1/generate", json=body("i2i", SD, source, upscale=4))
    assert response.status == 400 and "not an upscaler" in await response.text()


async def test_a_tiny_sdxl_is_listed_as_sdxl_and_generates_deterministically(
    adapted: DiffusersBinding,
) -> None:
    xl = {info.name: info for info in await adapted.list_models()}[SDXL]
    assert xl.family == "SDXL" and {"tti", "i2i", "inpaint"} <= xl.capabilities
    assert xl.details["loras"] == [{"name": "xl-tiny", "family": "SDXL"}]
    small = {"width": 32, "height": 32, "seed": 2}
    (first,) = await outputs(adapted, "tti", SDXL, **small)
    (again,) = await outputs(adapted, "tti", SDXL, **small)
    (styled,) = await outputs(adapted, "tti", SDXL, loras=[{"name": "xl-tiny"}], **small)
    assert first.data == again.data != styled.data
    assert picture(first.data).size == (32, 32)
    source = (image_input(first.data),)
    (edited,) = await outputs(adapted, "i2i", SDXL, inputs=source, strength=0.6, **small)
    assert picture(edited.data).size == (32, 32) and edited.data != first.data
    with pytest.raises(InvalidRequest) as caught:  # SDXL's default strength 0.3 x 2 steps
        await adapted.generate(make_request("i2i", SDXL, inputs=source, **small))
    assert "strength 0.3" in caught.value.message and "steps 2" in caught.value.message
    for name, words in (("style", ("SD 1.x", "SDXL")), ("xl-style", ("2048", "64"))):
        with pytest.raises(InvalidRequest) as caught:
            await adapted.generate(make_request("tti", SDXL, loras=[{"name": name}], **small))
        for word in (name, SDXL, *words):
            assert word in caught.value.message, caught.value.message


async def test_api_sdxl_same_seed_same_bytes(client: Client, adapters_root: Path) -> None:
    folder = binding_of(client).folders()[0]
    (folder / SDXL).symlink_to(adapters_root / SDXL, target_is_directory=True)
    (first,) = await generate(client, body("tti", SDXL, seed=5, width=32, height=32))
    (again,) = await generate(client, body("tti", SDXL, seed=5, width=32, height=32))
    assert first["data"] == again["data"] and first["metadata"]["model"] == SDXL
