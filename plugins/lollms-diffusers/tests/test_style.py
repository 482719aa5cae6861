"""Style reference (issue 19): a `style_reference` image through an IP-Adapter."""

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
    INSTANCE,
    SD,
    SDXL,
    STYLE,
    UPSCALER,
    VIDEO,
    Client,
    app_client,
    image_input,
    make_request,
    tiny_settings,
)
from .test_generation import outputs
from .test_server import body, generate, image_item

ROLE = "style_reference"


def png(color: str, size: int = 40) -> bytes:
    """A plain-colour PNG (a style image)."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest_asyncio.fixture
async def styled(tiny_models: Path, adapters_root: Path) -> AsyncIterator[DiffusersBinding]:
    """A started instance over the tiny models and the adapters folder (with the IP-Adapter)."""
    settings = tiny_settings(tiny_models)
    settings["models_folders"] = [str(tiny_models), str(adapters_root)]
    async with started_binding(DiffusersBinding, INSTANCE, settings) as started:
        assert isinstance(started, DiffusersBinding)
        yield started


async def test_a_style_reference_steers_the_image_through_the_ip_adapter(
    styled: DiffusersBinding,
) -> None:
    models = {info.name: info for info in await styled.list_models()}
    assert models[SD].details["ipadapters"] == [{"name": STYLE, "family": "SD 1.x"}]
    assert "ipadapters" not in models[SDXL].details
    blue = (image_input(png("blue"), ROLE),)
    (plain,) = await outputs(styled, "tti", seed=3)
    (first,) = await outputs(styled, "tti", seed=3, inputs=blue)
    (again,) = await outputs(styled, "tti", seed=3, inputs=blue, ip_adapter={"model": STYLE})
    (white,) = await outputs(styled, "tti", seed=3, inputs=(image_input(png("white"), ROLE),))
    (half,) = await outputs(styled, "tti", seed=3, inputs=blue, ip_adapter={"scale": 0.5})
    (plain_again,) = await outputs(styled, "tti", seed=3)  # the IP-Adapter is unloaded again
    assert first.data == again.data and plain_again.data == plain.data
    assert len({plain.data, first.data, white.data, half.data}) == 4
    source = image_input(plain.data)
    (edited,) = await outputs(styled, "i2i", seed=3, inputs=(source, *blue), strength=0.6)
    (unstyled,) = await outputs(styled, "i2i", seed=3, inputs=(source,), strength=0.6)
    assert edited.data != unstyled.data


@pytest.mark.parametrize(
    ("kind", "model", "inputs", "parameters", "words"),
    [
        ("tti", SDXL, True, {"width": 32, "height": 32}, (ROLE, "0 IP-Adapters", SDXL)),
        ("i2i", UPSCALER, True, {}, (ROLE, UPSCALER, "SD x4 upscaler", "takes no IP-Adapter")),
        ("tti", SD, False, {"ip_adapter": {"model": STYLE}}, (ROLE,)),
        ("tti", SD, True, {"ip_adapter": {"model": "nope"}}, ("nope", STYLE)),
        ("tti", SD, True, {"ip_adapter": {"scale": 5}}, ("ip_adapter.scale",)),
        ("tti", SD, True, {"ip_adapter": {"weight": 1}}, ("ip_adapter",)),
    ],
)
async def test_bad_style_requests_are_refused_naming_what_was_wrong(
    styled: DiffusersBinding,
    kind: str,
    model: str,
    inputs: bool,
    parameters: dict[str, Any],
    words: tuple[str, ...],
) -> None:
    given = [image_input(png("blue"), ROLE)] if inputs else []
    if kind == "i2i":
        given.append(image_input(png("red", 64)))
    with pytest.raises(InvalidRequest) as caught:
        await styled.generate(make_request(kind, model, inputs=tuple(given), **parameters))
    for word in words:
        assert word in caught.value.message, caught.value.message


async def test_api_style_reference_same_seed_same_bytes_and_400s(
    tiny_models: Path, adapters_root: Path, tmp_path: Path
) -> None:
    extra = {
        "tti/ipadapters": adapters_root / "ipadapters",
        f"i2i/{UPSCALER}": adapters_root / UPSCALER,
    }
    async with app_client(tiny_models, tiny_settings(tiny_models), tmp_path / "d", extra) as api:
        await _api_checks(api)


async def _api_checks(api: Client) -> None:
    style = image_item(png("blue"), ROLE)
    (first,) = await generate(api, body("tti", SD, style, seed=2))
    (again,) = await generate(api, body("tti", SD, style, seed=2, ip_adapter={"scale": 1.0}))
    (plain,) = await generate(api, body("tti", SD, seed=2))
    assert first["data"] == again["data"] != plain["data"]
    source = image_item(base64.b64decode(plain["data"]))
    for payload, words in (
        (body("ttv", VIDEO, style), (ROLE, "ttv")),
        (body("i2i", UPSCALER, source, style), (ROLE, "SD x4 upscaler")),
    ):
        response = await api.post("/api/v1/generate", json=payload)
        text = await response.text()
        assert response.status == 400 and all(word in text for word in words), text
