"""SD 3, Flux and SDXL (issue 19): tiny pipelines from configs, as folders and single files."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lollms_diffusers import DiffusersBinding

from lollms_server.errors import InvalidRequest
from lollms_server.testing import started_binding

from .conftest import (
    INSTANCE,
    SD,
    SDXL,
    STYLE,
    UPSCALER,
    app_client,
    image_input,
    make_request,
    tiny_settings,
)
from .test_generation import outputs, picture
from .test_server import body, generate, image_item

SD3 = "tiny-sd3"
FLUX = "tiny-flux"
XL = "tiny-sdxl-wide"  # an SDXL whose two text encoders differ in width, as the real ones do
FILES = {SD3: "sd3-file", FLUX: "flux-file", XL: "sdxl-file"}
SMALL = {"width": 32, "height": 32, "steps": 2}


@pytest.fixture(scope="session")
def families_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny SD 3, Flux and SDXL folders; SD 3's and Flux's transformer as a single file beside
    them, SDXL as one original-layout file (its configs in `configs-sdxl` next to the root)."""
    from lollms_diffusers import tiny, tiny_checkpoint_xl, tiny_families

    root = tmp_path_factory.mktemp("families")
    tiny_families.build_sd3(root / SD3)
    tiny_families.build_flux(root / FLUX)
    for model in (SD3, FLUX):
        target = root / f"{FILES[model]}.safetensors"
        tiny_families.transformer_single_file(root / model, target)
    tiny.build_sdxl(root / XL, second_width=48)
    configs = root.parent / f"{root.name}-configs-sdxl"
    tiny_checkpoint_xl.build_sdxl_single_file(root / XL, root / f"{FILES[XL]}.safetensors", configs)
    return root


def family_settings(tiny_models: Path, root: Path, *folders: Path) -> dict[str, Any]:
    """The tiny models' settings plus the families folder and the single files' configs."""
    settings = tiny_settings(tiny_models)
    settings["models_folders"] = [str(tiny_models), str(root), *map(str, folders)]
    settings["single_file_configs"] = {"SD 3": str(root / SD3), "Flux": str(root / FLUX)}
    settings["single_file_configs"]["SDXL"] = str(root.parent / f"{root.name}-configs-sdxl")
    return settings


@pytest_asyncio.fixture
async def families(
    tiny_models: Path, families_root: Path, adapters_root: Path
) -> AsyncIterator[DiffusersBinding]:
    """An instance over the tiny models, SD 3, Flux and the adapters."""
    settings = family_settings(tiny_models, families_root, adapters_root)
    async with started_binding(DiffusersBinding, INSTANCE, settings) as started:
        assert isinstance(started, DiffusersBinding)
        yield started


async def test_the_model_list_shows_each_family_and_the_workflows_it_takes(
    families: DiffusersBinding,
) -> None:
    models = {info.name: info for info in await families.list_models()}
    image = ["i2i", "inpaint", "tti"]
    for name, family in ((SD3, "SD 3"), (FLUX, "Flux")):
        for listed in (name, FILES[name]):
            info = models[listed]
            assert info.family == family and {"tti", "i2i"} <= info.capabilities, info
            assert info.details["workflows"] == sorted([*image, "loras"]), info.details
            assert "error" not in info.details, info.details
        assert models[FILES[name]].details["format"] == "single-file"
        assert models[FILES[name]].details["components"] == ["transformer"]
    xl = models[FILES[XL]]
    assert xl.family == "SDXL" and xl.details["format"] == "single-file", xl
    assert xl.parameters == models[XL].parameters and "error" not in xl.details, xl.details
    assert models[SD].details["workflows"] == sorted(
        [*image, "loras", "controlnet", "style_reference"]
    )
    assert models[SDXL].details["workflows"] == models[SD].details["workflows"]
    assert models[UPSCALER].details["workflows"] == ["i2i", "upscale"]
    assert models["tiny-animatediff"].details["workflows"] == ["ttv", "v2v"]


@pytest.mark.parametrize("model", [SD3, FLUX, XL])
async def test_folder_and_single_file_generate_the_same_bytes(
    families: DiffusersBinding, model: str
) -> None:
    (first,) = await outputs(families, "tti", model, seed=4, **SMALL)
    (again,) = await outputs(families, "tti", model, seed=4, **SMALL)
    (other,) = await outputs(families, "tti", model, seed=5, **SMALL)
    (from_file,) = await outputs(families, "tti", FILES[model], seed=4, **SMALL)
    assert first.data == again.data == from_file.data != other.data
    assert picture(first.data).size == (32, 32)
    source = (image_input(first.data),)
    (edited,) = await outputs(families, "i2i", model, inputs=source, seed=4, strength=0.7, **SMALL)
    assert picture(edited.data).size == (32, 32) and edited.data != first.data


@pytest.mark.parametrize(
    ("model", "inputs", "parameters", "words"),
    [
        (FLUX, "style_reference", {}, ("style_reference", FLUX, "Flux")),
        (SD3, "style_reference", {"ip_adapter": {"model": STYLE}}, ("style_reference", "SD 3")),
        (FLUX, None, {"loras": [{"name": "style"}]}, ("style", "SD 1.x", FLUX, "Flux")),
        (SD3, "controlnet_image", {"controlnet": {"model": "tiny-control"}}, ("tiny-control", SD3)),
    ],
)
async def test_workflows_a_family_does_not_take_are_400s_naming_them(
    families: DiffusersBinding, model: str, inputs: str | None, parameters: Any, words: Any
) -> None:
    (image,) = await outputs(families, "tti", SD, seed=1, width=32, height=32)
    given = (image_input(image.data, inputs),) if inputs else ()
    with pytest.raises(InvalidRequest) as caught:
        await families.generate(make_request("tti", model, inputs=given, **SMALL, **parameters))
    for word in words:
        assert word in caught.value.message, caught.value.message


async def test_api_sd3_and_flux_same_seed_same_bytes(
    tiny_models: Path, families_root: Path, tmp_path: Path
) -> None:
    settings = family_settings(tiny_models, families_root)
    extra = {f"tti/{name}": families_root / name for name in (SD3, FLUX)}
    for name in (FILES[FLUX], FILES[XL]):
        extra[f"tti/{name}.safetensors"] = families_root / f"{name}.safetensors"
    async with app_client(tiny_models, settings, tmp_path / "d", extra) as api:
        for model in (SD3, FLUX, FILES[FLUX], FILES[XL]):
            (first,) = await generate(api, body("tti", model, seed=3, **SMALL))
            (again,) = await generate(api, body("tti", model, seed=3, **SMALL))
            assert first["data"] == again["data"] and first["metadata"]["model"] == model
        png = base64.b64decode(first["data"])
        payload = body("tti", FLUX, image_item(png, "style_reference"), **SMALL)
        response = await api.post("/api/v1/generate", json=payload)
        text = await response.text()
        assert response.status == 400 and "style_reference" in text and "Flux" in text, text
