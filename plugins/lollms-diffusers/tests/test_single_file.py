"""Single-file checkpoints end to end: the tiny SD as one original-layout .safetensors file.

`lollms_diffusers.tiny_checkpoint` renames the tiny SD folder's tensors to the original
CompVis names and copies its configs (no weights) to a separate folder; the binding must list
the file as SD 1.x and load it with `from_single_file(config=<that folder>)`, offline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lollms_diffusers import DiffusersBinding

from lollms_server.errors import BackendError, InvalidRequest
from lollms_server.testing import build_binding, started_binding

from .conftest import INSTANCE, SD, make_request, tiny_settings
from .test_generation import outputs, picture

SINGLE = "tiny-sd-single"


@pytest.fixture(scope="module")
def checkpoint(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A models folder holding the tiny SD as one file, and the folder of its configs."""
    from lollms_diffusers import tiny_checkpoint

    root = tmp_path_factory.mktemp("single")
    models, configs = root / "models", root / "configs" / "sd15"
    tiny_checkpoint.build_single_file(tiny_models / SD, models / f"{SINGLE}.safetensors", configs)
    return {"models": models, "configs": configs}


def single_settings(checkpoint: dict[str, Path], configs: Path | None = None) -> dict[str, Any]:
    """Test settings over the single-file folder, the SD 1.x family's configs configured."""
    return {
        **tiny_settings(checkpoint["models"]),
        "single_file_configs": {"SD 1.x": str(configs or checkpoint["configs"])},
    }


@pytest.fixture(autouse=True)
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt of diffusers to fetch a family's configs from the Hub."""
    from diffusers.loaders import single_file

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"diffusers went to the Hub: {args}")

    monkeypatch.setattr(single_file, "_download_diffusers_model_config_from_hub", refuse)


@pytest_asyncio.fixture
async def single(checkpoint: dict[str, Path]) -> AsyncIterator[DiffusersBinding]:
    """A started instance whose only model is the single file."""
    async with started_binding(DiffusersBinding, INSTANCE, single_settings(checkpoint)) as b:
        assert isinstance(b, DiffusersBinding)
        yield b


def test_the_file_has_the_original_key_names(checkpoint: dict[str, Path]) -> None:
    from lollms_diffusers.headers import safetensors_header

    header = safetensors_header(checkpoint["models"] / f"{SINGLE}.safetensors")
    prefixes = {key.split(".")[0] for key in header if key != "__metadata__"}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in header
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in header
    assert not list(checkpoint["configs"].rglob("*.safetensors")), "configs only, no weights"


async def test_listed_as_sd1_with_capabilities_and_memory(
    single: DiffusersBinding, tiny_models: Path
) -> None:
    (model,) = await single.list_models()
    assert model.name == SINGLE and model.family == "SD 1.x"
    assert {"tti", "i2i", "inpaint"} <= model.capabilities
    assert model.details["format"] == "single-file"
    assert model.details["pipeline"] == "StableDiffusionPipeline"
    assert "error" not in model.details
    folder = build_binding(DiffusersBinding, "folder", tiny_settings(tiny_models))
    same = {m.name: m for m in await folder.list_models()}[SD]
    assert model.parameters and model.parameters == same.parameters, "every weight of the folder"
    assert model.memory_bytes == model.parameters * 4 and model.quantization == "F32"


async def test_text_to_image_from_the_single_file(
    single: DiffusersBinding, binding: DiffusersBinding
) -> None:
    (image,) = await outputs(single, "tti", SINGLE, width=64, height=48, seed=3)
    assert image.mime_type == "image/png" and picture(image.data).size == (64, 48)
    assert image.metadata["model"] == SINGLE and image.metadata["seed"] == 3
    assert single.loaded_models() == [SINGLE]
    (again,) = await outputs(single, "tti", SINGLE, width=64, height=48, seed=3)
    assert again.data == image.data
    (other,) = await outputs(single, "tti", SINGLE, width=64, height=48, seed=4)
    assert other.data != image.data
    (folder,) = await outputs(binding, "tti", SD, width=64, height=48, seed=3)
    assert folder.data == image.data, "the same weights as the diffusers folder, renamed back"


async def test_a_configs_folder_that_is_not_a_diffusers_folder(
    checkpoint: dict[str, Path], tmp_path: Path
) -> None:
    settings = single_settings(checkpoint, tmp_path / "no-such-folder")
    async with started_binding(DiffusersBinding, INSTANCE, settings) as b:
        assert isinstance(b, DiffusersBinding)
        (model,) = await b.list_models()
        assert "not a diffusers folder" in model.details["error"]
        with pytest.raises(InvalidRequest, match="not a diffusers folder"):
            await b.generate(make_request("tti", SINGLE))
        assert b.loaded_models() == []


async def test_configs_that_do_not_fit_the_checkpoint(
    checkpoint: dict[str, Path], tmp_path: Path
) -> None:
    configs = shutil.copytree(checkpoint["configs"], tmp_path / "wrong")
    unet = configs / "unet" / "config.json"
    unet.write_text(json.dumps({**json.loads(unet.read_text()), "block_out_channels": [64, 64]}))
    async with started_binding(
        DiffusersBinding, INSTANCE, single_settings(checkpoint, configs)
    ) as b:
        assert isinstance(b, DiffusersBinding)
        with pytest.raises(BackendError, match="cannot load single-file"):
            await b.generate(make_request("tti", SINGLE))
        assert b.loaded_models() == []
