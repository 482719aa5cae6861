"""A tiny SDXL single-file checkpoint (original key names), for tests; the SD 1.x one's sibling.

Test support only, like `tiny_checkpoint`: `build_sdxl_single_file(sdxl_folder, target,
configs)` writes a diffusers SDXL folder (such as `tiny.build_sdxl`'s) as one `.safetensors`
file with the tensor names of Stability's SDXL checkpoints — the UNet and VAE as in SD 1.x plus
`label_emb` (size and crop conditioning), the first text encoder under
`conditioner.embedders.0.transformer.` and the second in OpenCLIP's layout under
`conditioner.embedders.1.model.` (fused `in_proj` attention, `text_projection` transposed) —
the inverse of diffusers' `convert_open_clip_checkpoint` — and copies the configs to `configs`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .tiny_checkpoint import UNET, VAE, _convert, clip_key, copy_configs, unet_key, vae_key

FIRST = "conditioner.embedders.0.transformer."
SECOND = "conditioner.embedders.1.model."
LABEL_EMB = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
OPEN_CLIP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def sdxl_unet_key(key: str, layers: int, attention_ups: set[int]) -> str:
    """The original name of an SDXL UNet tensor: SD 1.x's, plus the added conditioning."""
    for new, old in LABEL_EMB.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    return unet_key(key, layers, attention_ups)


def open_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's tensors in OpenCLIP's layout (without the prefix)."""
    plain = {key.removeprefix("text_model."): value for key, value in state.items()}
    found: dict[str, torch.Tensor] = {}
    for key, value in plain.items():
        if key in OPEN_CLIP:
            found[OPEN_CLIP[key]] = value
        elif key == "text_projection.weight":
            found["text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            index, rest = key.removeprefix("encoder.layers.").split(".", 1)
            prefix = f"transformer.resblocks.{index}."
            if rest.startswith("self_attn.q_proj."):
                kind = rest.rsplit(".", 1)[1]  # weight | bias
                parts = [plain[f"encoder.layers.{index}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                found[f"{prefix}attn.in_proj_{kind}"] = torch.cat(parts).contiguous()
            elif not rest.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                for new, old in OPEN_CLIP_LAYER.items():
                    rest = rest.replace(new, old)
                found[prefix + rest] = value
    return found


def build_sdxl_single_file(folder: Path, target: Path, configs: Path) -> Path:
    """Write an SDXL diffusers folder's weights as one original-layout file, and its configs."""
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    layers = int(unet_config["layers_per_block"])
    ups = {i for i, kind in enumerate(unet_config["up_block_types"]) if kind.startswith("Cross")}
    vae_ups = len(vae_config["up_block_types"])
    weights = "diffusion_pytorch_model.safetensors"
    vae = _convert(load_file(folder / "vae" / weights), VAE, lambda key: vae_key(key, vae_ups))
    for key, value in vae.items():  # the original attention projections are 1x1 convs
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            vae[key] = value[:, :, None, None].contiguous()
    state = {
        **_convert(
            load_file(folder / "unet" / weights), UNET, lambda k: sdxl_unet_key(k, layers, ups)
        ),
        **vae,
        **_convert(load_file(folder / "text_encoder" / "model.safetensors"), FIRST, clip_key),
    }
    second = open_clip_state(load_file(folder / "text_encoder_2" / "model.safetensors"))
    state.update({SECOND + key: value for key, value in second.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, target, metadata={"format": "pt"})
    copy_configs(folder, configs)
    return target
