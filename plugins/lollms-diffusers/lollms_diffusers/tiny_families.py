"""Tiny random SD 3 and Flux pipelines built from configs (tests: nothing is downloaded).

Test support only, like `tiny`: the configs follow diffusers' own SD 3 and Flux pipeline tests,
with the CLIP tokenizer of `tiny` and a T5 tokenizer built here from a word list (no Hub
`tiny-random-t5`). `transformer_single_file` writes a model's transformer as one
`.safetensors` file, as Flux and SD 3 checkpoints are usually shared.
"""

# mypy: disable-error-code="no-untyped-call,attr-defined"

from __future__ import annotations

import shutil
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from .tiny import WORDS, clip_tokenizer

SD3 = "tiny-sd3"
FLUX = "tiny-flux"


def t5_tokenizer() -> T5Tokenizer:
    """A T5 (Unigram) tokenizer over a few whole words and single characters."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + word, -1.0) for word in WORDS] + [("\u2581", -2.0)]
    pieces += [(char, -3.0) for char in string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _t5(tokenizer: T5Tokenizer) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return T5EncoderModel(config)


def _clip_config(vocab: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=vocab,
        hidden_act="gelu",
        projection_dim=32,
    )


def _vae(latent_channels: int) -> AutoencoderKL:
    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def build_sd3(folder: Path, seed: int = 6) -> Path:
    """A tiny Stable Diffusion 3 (MMDiT transformer, two CLIP encoders and T5) saved to `folder`."""
    torch.manual_seed(seed)
    clip, t5 = clip_tokenizer(), t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,  # both CLIP encoders' pooled outputs side by side
        out_channels=4,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(4),
        text_encoder=CLIPTextModelWithProjection(_clip_config(len(clip))),
        tokenizer=clip,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(len(clip))),
        tokenizer_2=clip,
        text_encoder_3=_t5(t5),
        tokenizer_3=t5,
    )
    pipe.save_pretrained(folder)
    return folder


def build_flux(folder: Path, seed: int = 7) -> Path:
    """A tiny Flux (double and single stream blocks, CLIP and T5) saved to `folder`."""
    torch.manual_seed(seed)
    clip, t5 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,  # 2x2 packed latents of one channel
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    pipe = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(1),
        text_encoder=CLIPTextModel(_clip_config(len(clip))),
        tokenizer=clip,
        text_encoder_2=_t5(t5),
        tokenizer_2=t5,
    )
    pipe.save_pretrained(folder)
    return folder


def transformer_single_file(folder: Path, target: Path) -> Path:
    """The transformer of a diffusers folder as one `.safetensors` file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "transformer" / "diffusion_pytorch_model.safetensors", target)
    return target
