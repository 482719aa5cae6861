"""A tiny single-file checkpoint (original Stable Diffusion key names), for tests.

Test support only, like `tiny`: imports torch at import time and is never imported by the
plugin. `build_single_file(sd_folder, target, configs)` turns a diffusers-layout SD 1.x folder
(such as `tiny.build_sd`'s) into one `.safetensors` file with the tensor names of the original
CompVis checkpoints (`model.diffusion_model.*`, `first_stage_model.*`,
`cond_stage_model.transformer.*`) — the inverse of what `from_single_file` converts — and
copies the folder's configs (no weights) to `configs`, the folder `single_file_configs` names.

The mapping follows diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py`,
generalised to any number of blocks and layers (that script hard-codes SD 1.5's four blocks).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer."
UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
VAE_TOP = {"conv_norm_out": "norm_out"}
VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
CONFIG_SUFFIXES = (".json", ".txt")


def _renamed(rest: str, names: Mapping[str, str]) -> str:
    """`rest` with its leading dotted name replaced from `names` (longest match first)."""
    for old in sorted(names, key=len, reverse=True):
        if rest.startswith(old + "."):
            return names[old] + rest[len(old) :]
    return rest


def unet_key(key: str, layers: int, attention_ups: set[int]) -> str:
    """The original name of a diffusers UNet2DConditionModel tensor (without the prefix)."""
    top = _renamed(key, UNET_TOP)
    if top != key:
        return top
    parts = key.split(".")
    where, rest = parts[0], ".".join(parts[4:])
    if where == "mid_block":
        index, rest = int(parts[2]), ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * index}.{_renamed(rest, UNET_RESNET)}"
        return f"middle_block.1.{rest}"
    block, kind, index = int(parts[1]), parts[2], int(parts[3])
    if where == "down_blocks":
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.weight
            return f"input_blocks.{(block + 1) * (layers + 1)}.0.op.{'.'.join(parts[5:])}"
        slot = 1 + block * (layers + 1) + index
        if kind == "resnets":
            return f"input_blocks.{slot}.0.{_renamed(rest, UNET_RESNET)}"
        return f"input_blocks.{slot}.1.{rest}"
    if where == "up_blocks":
        if kind == "upsamplers":  # after the block's attention when it has one
            place = 2 if block in attention_ups else 1
            return f"output_blocks.{block * (layers + 1) + layers}.{place}.{rest}"
        slot = block * (layers + 1) + index
        if kind == "resnets":
            return f"output_blocks.{slot}.0.{_renamed(rest, UNET_RESNET)}"
        return f"output_blocks.{slot}.1.{rest}"
    raise KeyError(f"no original name for UNet tensor {key!r}")


def vae_key(key: str, up_blocks: int) -> str:
    """The original name of a diffusers AutoencoderKL tensor (without the prefix)."""
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return key  # quant_conv, post_quant_conv
    pieces = rest.split(".")
    if pieces[0] in ("down_blocks", "up_blocks"):
        block = int(pieces[1])
        kind = "down" if pieces[0] == "down_blocks" else "up"
        number = block if kind == "down" else up_blocks - 1 - block  # ldm counts up blocks back
        if pieces[2] == "resnets":
            tail = ".".join(pieces[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{part}.{kind}.{number}.block.{pieces[3]}.{tail}"
        sampler = "downsample" if kind == "down" else "upsample"  # ...samplers.0.conv.weight
        return f"{part}.{kind}.{number}.{sampler}.{'.'.join(pieces[4:])}"
    if pieces[0] == "mid_block" and pieces[1] == "resnets":
        tail = ".".join(pieces[3:]).replace("conv_shortcut", "nin_shortcut")
        return f"{part}.mid.block_{int(pieces[2]) + 1}.{tail}"
    if pieces[0] == "mid_block":  # mid_block.attentions.0.<name>
        return f"{part}.mid.attn_1.{_renamed('.'.join(pieces[3:]), VAE_ATTENTION)}"
    return f"{part}.{_renamed(rest, VAE_TOP)}"


def clip_key(key: str) -> str:
    """The original name of a CLIPTextModel tensor (transformers 5 drops `text_model.`)."""
    return key if key.startswith("text_model.") else f"text_model.{key}"


def _convert(
    state: Mapping[str, torch.Tensor], prefix: str, rename: Callable[[str], str]
) -> dict[str, torch.Tensor]:
    return {prefix + rename(key): value.contiguous() for key, value in state.items()}


def original_state_dict(sd_folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a diffusers SD 1.x folder under its original checkpoint name."""
    unet_config = json.loads((sd_folder / "unet" / "config.json").read_text())
    vae_config = json.loads((sd_folder / "vae" / "config.json").read_text())
    layers = int(unet_config["layers_per_block"])
    attention_ups = {
        index
        for index, kind in enumerate(unet_config["up_block_types"])
        if kind.startswith("CrossAttn")
    }
    up_blocks = len(vae_config["up_block_types"])
    unet = load_file(sd_folder / "unet" / "diffusion_pytorch_model.safetensors")
    vae = load_file(sd_folder / "vae" / "diffusion_pytorch_model.safetensors")
    text = load_file(sd_folder / "text_encoder" / "model.safetensors")
    vae_original = _convert(vae, VAE, lambda key: vae_key(key, up_blocks))
    for key, value in vae_original.items():  # the original attention projections are 1x1 convs
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            vae_original[key] = value[:, :, None, None].contiguous()
    return {
        **_convert(unet, UNET, lambda key: unet_key(key, layers, attention_ups)),
        **vae_original,
        **_convert(text, CLIP, clip_key),
    }


def copy_configs(sd_folder: Path, configs: Path) -> Path:
    """Copy a diffusers folder's JSON and text files (configs, tokenizer), not its weights."""
    for source in sd_folder.rglob("*"):
        if source.is_file() and source.suffix in CONFIG_SUFFIXES:
            target = configs / source.relative_to(sd_folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return configs


def build_single_file(sd_folder: Path, target: Path, configs: Path) -> Path:
    """Write `sd_folder`'s weights as one original-layout .safetensors file, and its configs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(original_state_dict(sd_folder), target, metadata={"format": "pt"})
    copy_configs(sd_folder, configs)
    return target
