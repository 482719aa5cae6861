"""Model discovery without torch: folders, single files, families, capabilities, weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from lollms_diffusers import DiffusersBinding, catalog, headers
from lollms_diffusers.catalog import Catalog

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.errors import InvalidRequest
from lollms_server.testing import build_binding


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """A valid .safetensors file with zero-filled tensors of the given dtypes and shapes."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = headers.DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))
    return path


def write_folder(
    root: Path,
    pipeline: str = "StableDiffusionPipeline",
    unet: dict[str, Any] | None = None,
    weights: dict[str, str] | None = None,
) -> Path:
    """A diffusers-layout folder with unet and text_encoder weights."""
    index = {
        "_class_name": pipeline,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "safety_checker": [None, None],
    }
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index))
    (root / "unet").mkdir()
    (root / "unet" / "config.json").write_text(json.dumps(unet or {"cross_attention_dim": 768}))
    files = (
        weights
        if weights is not None
        else {
            "unet": "diffusion_pytorch_model.safetensors",
            "text_encoder": "model.safetensors",
        }
    )
    for component, name in files.items():
        dtype = "F16" if ".fp16." in name else "F32"
        write_safetensors(root / component / name, {"w": (dtype, [10, 10]), "b": (dtype, [10])})
    return root


def test_folders_files_and_nested_names(tmp_path: Path) -> None:
    write_folder(tmp_path / "sd15")
    write_folder(tmp_path / "org" / "sdxl-base", "StableDiffusionXLPipeline")
    write_safetensors(
        tmp_path / "dreamy.safetensors",
        {"model.diffusion_model.input_blocks.0.0.weight": ("F16", [320, 4, 3, 3])},
    )
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    found = catalog.scan([tmp_path])
    assert sorted(found) == ["dreamy", "org/sdxl-base", "sd15"]
    assert found["org/sdxl-base"].family == "SDXL"
    assert found["dreamy"].single_file and found["dreamy"].family == "SD 1.x"


def test_first_folder_wins_a_name_clash(tmp_path: Path) -> None:
    first = write_folder(tmp_path / "a" / "same")
    write_folder(tmp_path / "b" / "same", "AudioLDMPipeline")
    found = catalog.scan([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])
    assert found["same"].path == first and found["same"].family == "SD 1.x"


def test_weights_parameters_and_memory(tmp_path: Path) -> None:
    entry = catalog.scan([tmp_path])["m"] if write_folder(tmp_path / "m") else None
    assert entry is not None
    assert entry.weights.parameters == 2 * 110
    assert entry.weights.exact and entry.stored_dtype == "F32"
    assert entry.memory_bytes("fp32") == 880 and entry.memory_bytes("fp16") == 440
    assert entry.components == ("unet", "text_encoder")
    assert entry.details()["format"] == "diffusers"


def test_fp16_only_folder_needs_its_variant(tmp_path: Path) -> None:
    weights = {
        "unet": "diffusion_pytorch_model.fp16.safetensors",
        "text_encoder": "model.fp16.safetensors",
    }
    entry = catalog.scan([tmp_path])["m"] if write_folder(tmp_path / "m", weights=weights) else None
    assert entry is not None and entry.variant == "fp16" and entry.stored_dtype == "F16"


def test_non_variant_weights_are_preferred(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "m")
    write_safetensors(
        folder / "unet" / "diffusion_pytorch_model.fp16.safetensors", {"w": ("F16", [99])}
    )
    entry = catalog.scan([tmp_path])["m"]
    assert entry.variant is None and entry.weights.parameters == 220


def test_bin_weights_are_estimated_from_their_size(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "m", weights={})
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(bytes(4000))
    entry = catalog.scan([tmp_path])["m"]
    assert entry.weights.parameters == 1000 and not entry.weights.exact


@pytest.mark.parametrize(
    ("pipeline", "unet", "family", "capabilities"),
    [
        (
            "StableDiffusionPipeline",
            {"cross_attention_dim": 768},
            "SD 1.x",
            {"tti", "i2i", "inpaint"},
        ),
        (
            "StableDiffusionPipeline",
            {"cross_attention_dim": 1024},
            "SD 2.x",
            {"tti", "i2i", "inpaint"},
        ),
        ("StableDiffusionPipeline", {"in_channels": 9}, "SD 1.x", {"i2i", "inpaint"}),
        ("StableDiffusionXLInpaintPipeline", {}, "SDXL", {"i2i", "inpaint"}),
        ("FluxPipeline", {}, "Flux", {"tti", "i2i", "inpaint"}),
        ("AnimateDiffPipeline", {}, "AnimateDiff", {"ttv", "v2v"}),
        ("AudioLDM2Pipeline", {}, "AudioLDM 2", {"ttm"}),
        ("KandinskyV22InpaintPipeline", {}, "KandinskyV22Inpaint", {"i2i", "inpaint"}),
        ("SomeNewVideoPipeline", {}, "SomeNewVideo", {"ttv"}),
        ("SomethingPipeline", {}, "Something", {"tti"}),
    ],
)
def test_families_and_capabilities(
    tmp_path: Path, pipeline: str, unet: dict[str, Any], family: str, capabilities: set[str]
) -> None:
    write_folder(tmp_path / "m", pipeline, unet)
    entry = catalog.scan([tmp_path])["m"]
    assert (entry.family, set(entry.capabilities)) == (family, capabilities)
    assert entry.needs_mask == ("tti" not in capabilities and "inpaint" in capabilities)


@pytest.mark.parametrize(
    ("key", "shape", "family", "capabilities"),
    [
        (
            "conditioner.embedders.1.model.ln_final.weight",
            [1280],
            "SDXL",
            {"tti", "i2i", "inpaint"},
        ),
        ("conditioner.embedders.0.model.ln_final.weight", [1280], "SDXL refiner", {"i2i"}),
        ("cond_stage_model.model.transformer.resblocks.0.ln_1.weight", [1024], "SD 2.x", None),
        (
            "model.diffusion_model.input_blocks.0.0.weight",
            [320, 9, 3, 3],
            "SD 1.x",
            {"i2i", "inpaint"},
        ),
        ("double_blocks.0.img_attn.norm.key_norm.scale", [128], "Flux", None),
        ("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", [8], "SD 3", None),
    ],
)
def test_single_file_families(
    tmp_path: Path, key: str, shape: list[int], family: str, capabilities: set[str] | None
) -> None:
    write_safetensors(tmp_path / "ckpt.safetensors", {key: ("F16", shape)})
    entry = catalog.scan([tmp_path])["ckpt"]
    assert entry.family == family and entry.error is None
    assert set(entry.capabilities) == (capabilities or {"tti", "i2i", "inpaint"})
    assert entry.pipeline_class == catalog.SINGLE_FILE_PIPELINES[family]


def test_unreadable_models_are_listed_with_their_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 16)
    write_safetensors(tmp_path / "lora.safetensors", {"lora_unet_down.alpha": ("F32", [1])})
    found = catalog.scan([tmp_path])
    assert found["broken"].error and not found["broken"].capabilities
    assert "not a safetensors file" in (found["junk"].error or "")
    assert found["lora"].family == "unknown" and found["lora"].error


def test_the_catalog_rereads_a_model_only_when_it_changes(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "m")
    scanner = Catalog()
    first = scanner.scan([tmp_path])["m"]
    assert scanner.scan([tmp_path])["m"] is first
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "AudioLDMPipeline"
    (folder / "model_index.json").write_text(json.dumps(index) + "\n")
    assert scanner.scan([tmp_path])["m"].family == "AudioLDM"


async def test_single_files_need_their_family_configs(tmp_path: Path) -> None:
    key = "model.diffusion_model.input_blocks.0.0.weight"
    write_safetensors(tmp_path / "dreamy.safetensors", {key: ("F16", [320, 4, 3, 3])})
    settings = {"models_folders": [str(tmp_path)], "use_data_dir": False}
    binding = build_binding(DiffusersBinding, "d", settings)
    (model,) = await binding.list_models()
    assert model.family == "SD 1.x" and model.details["format"] == "single-file"
    assert 'single_file_configs."SD 1.x"' in model.details["error"]
    request = GenerationRequest("tti", "dreamy", messages=(ChatMessage("user", "x"),))
    with pytest.raises(InvalidRequest, match="single_file_configs"):
        await binding.generate(request)
    assert binding.loaded_models() == []
