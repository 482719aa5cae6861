"""A tiny random IP-Adapter for a tiny UNet pipeline, in the layout diffusers loads (tests).

Test support only, like `tiny`. `build_ip_adapter(model_folder, target)` writes
`target/ip-adapter.safetensors` (`image_proj.*`: the image-embedding projection to 4 tokens;
`ip_adapter.<n>.to_k_ip|to_v_ip.weight`: the extra key/value projections of each
cross-attention, numbered as diffusers' `load_ip_adapter` counts them) and `target/image_encoder/`
(a tiny `CLIPVisionModelWithProjection`), so `pipe.load_ip_adapter(target, subfolder="",
weight_name="ip-adapter.safetensors")` loads it offline.
"""

# mypy: disable-error-code="no-untyped-call,attr-defined"

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

WEIGHTS = "ip-adapter.safetensors"
IMAGE_EMBED = 16  # the image encoder's projection width
TOKENS = 4  # image tokens a plain IP-Adapter adds to the text tokens


def _hidden_size(unet: UNet2DConditionModel, name: str) -> int:
    """The channels of the UNet block an attention processor sits in."""
    channels = [int(c) for c in unet.config.block_out_channels]
    if name.startswith("mid_block"):
        return channels[-1]
    block = int(name.split(".")[1])
    return list(reversed(channels))[block] if name.startswith("up_blocks") else channels[block]


def ip_adapter_state(unet: UNet2DConditionModel, std: float = 0.5) -> dict[str, torch.Tensor]:
    """Random IP-Adapter tensors for `unet` (flat `image_proj.` / `ip_adapter.` names)."""
    width = int(unet.config.cross_attention_dim)
    state: dict[str, torch.Tensor] = {
        "image_proj.proj.weight": torch.randn(width * TOKENS, IMAGE_EMBED) * std,
        "image_proj.proj.bias": torch.zeros(width * TOKENS),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: diffusers counts it (key += 2 per cross-attention only)
        hidden = _hidden_size(unet, name)
        state[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, width) * std
        state[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, width) * std
        key += 2
    return state


def build_image_encoder(target: Path, image_size: int = 32) -> Path:
    """A tiny CLIP vision encoder with a projection, saved with save_pretrained."""
    config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=24,
        num_attention_heads=2,
        num_hidden_layers=2,
        image_size=image_size,
        patch_size=8,
        projection_dim=IMAGE_EMBED,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(target)
    return target


def build_ip_adapter(model_folder: Path, target: Path, seed: int = 5) -> Path:
    """An IP-Adapter folder for the diffusers model in `model_folder` (its UNet's widths)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(model_folder / "unet")
    target.mkdir(parents=True, exist_ok=True)
    save_file(ip_adapter_state(unet), target / WEIGHTS, metadata={"format": "pt"})
    build_image_encoder(target / "image_encoder")
    return target
