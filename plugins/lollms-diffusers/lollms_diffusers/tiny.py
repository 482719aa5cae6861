"""Tiny random-weight pipelines built from configs, for tests: nothing is downloaded.

Test support only: this module imports torch, diffusers and transformers at import time, so
the plugin itself never imports it. `build_all(root)` writes three diffusers-layout folders
(`tiny-sd`, `tiny-animatediff`, `tiny-audioldm`) that the binding loads like any model folder.
"""

# diffusers' model and pipeline classes carry no type hints:
# mypy: disable-error-code="no-untyped-call,attr-defined"

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AnimateDiffPipeline,
    AudioLDMPipeline,
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DDPMScheduler,
    MotionAdapter,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    ClapTextConfig,
    ClapTextModelWithProjection,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)

SD = "tiny-sd"
VIDEO = "tiny-animatediff"
AUDIO = "tiny-audioldm"
WORDS = ("a", "red", "circle", "on", "white", "background", "short", "test", "cat", "dog")


def byte_alphabet() -> list[str]:
    """GPT-2's 256 printable stand-ins for the bytes 0-255, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _word_merges(words: tuple[str, ...], suffix: str) -> tuple[list[tuple[str, str]], list[str]]:
    """BPE merges building each word left to right, and the tokens they create."""
    merges: list[tuple[str, str]] = []
    tokens: list[str] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + suffix]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = (current, piece)
            current += piece
            if merge not in merges:
                merges.append(merge)
                tokens.append(current)
    return merges, tokens


def clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer over bytes plus a few whole words (77 tokens max)."""
    alphabet = byte_alphabet()
    merges, merged = _word_merges(WORDS, "</w>")
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), *merged]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def roberta_tokenizer() -> RobertaTokenizer:
    """A byte-level RoBERTa tokenizer (specials 0-4, then bytes and a few words)."""
    alphabet = byte_alphabet()
    space = alphabet[ord(" ")]
    merges, merged = _word_merges(tuple(space + w for w in WORDS), "")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*specials, *alphabet, *merged]))}
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _clip_text(tokenizer: CLIPTokenizer, hidden: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def _vae(channels: tuple[int, int], in_channels: int = 3, groups: int = 32) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=list(channels),
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=groups,
        sample_size=64,
    )


def build_sd(folder: Path, seed: int = 0) -> Path:
    """A tiny Stable Diffusion (SD 1.x layout) text-to-image pipeline saved to `folder`."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    pipe = StableDiffusionPipeline(
        vae=_vae((32, 64)),
        text_encoder=_clip_text(tokenizer, 32),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_animatediff(folder: Path, seed: int = 0) -> Path:
    """A tiny AnimateDiff text-to-video pipeline (UNet + MotionAdapter) saved to `folder`."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8),
        layers_per_block=2,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=2,
    )
    adapter = MotionAdapter(
        block_out_channels=(8, 8),
        motion_layers_per_block=2,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    )
    pipe = AnimateDiffPipeline(
        vae=_vae((8, 8), groups=2),
        text_encoder=_clip_text(tokenizer, 8),
        tokenizer=tokenizer,
        unet=unet,
        motion_adapter=adapter,
        scheduler=_scheduler(),
        feature_extractor=None,
        image_encoder=None,
    )
    pipe.save_pretrained(folder)
    return folder


def build_audioldm(folder: Path, seed: int = 0) -> Path:
    """A tiny AudioLDM text-to-audio pipeline (CLAP text, HiFi-GAN vocoder) saved to `folder`."""
    torch.manual_seed(seed)
    tokenizer = roberta_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(32, 64),
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=32,
        class_embeddings_concat=True,
    )
    text_config = ClapTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        projection_dim=32,
    )
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=16,
            upsample_rates=[10, 8, 2],
            upsample_kernel_sizes=[20, 16, 4],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3, 5]],
            normalize_before=False,
        )
    )
    with torch.no_grad():  # the default init is near silent: make the random vocoder audible
        for module in vocoder.modules():
            if isinstance(module, torch.nn.Conv1d | torch.nn.ConvTranspose1d):
                module.weight.normal_(0.0, 0.2)
    pipe = AudioLDMPipeline(
        vae=_vae((32, 64), in_channels=1),
        text_encoder=ClapTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        vocoder=vocoder,
    )
    pipe.save_pretrained(folder)
    return folder


def build_lora(sd_folder: Path, target: Path, seed: int = 1) -> Path:
    """A random LoRA for the tiny SD's UNet attention, saved as one .safetensors file."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(sd_folder / "unet")
    config = LoraConfig(
        r=4,
        lora_alpha=4,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,  # random, so the LoRA visibly changes the output
    )
    unet.add_adapter(config)
    StableDiffusionPipeline.save_lora_weights(
        target.parent,
        unet_lora_layers=get_peft_model_state_dict(unet),
        weight_name=target.name,
    )
    return target


def build_controlnet(sd_folder: Path, target: Path, seed: int = 2) -> Path:
    """A ControlNet for the tiny SD (from its UNet), saved as a diffusers folder."""
    torch.manual_seed(seed)
    vae_blocks = AutoencoderKL.load_config(sd_folder / "vae")["block_out_channels"]
    controlnet = ControlNetModel.from_unet(
        UNet2DConditionModel.from_pretrained(sd_folder / "unet"),
        # one stride-2 step fewer than its blocks: the control image lands on the latent grid
        conditioning_embedding_out_channels=tuple(16 * 2**i for i in range(len(vae_blocks))),
    )
    with torch.no_grad():  # its zero convolutions random, so the control image shows
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            torch.nn.init.normal_(block.weight, std=0.5)
    controlnet.save_pretrained(target)
    return target


def build_upscaler(folder: Path, seed: int = 3) -> Path:
    """A tiny x4 upscaler (the SD x4 upscaler's layout: low-res image beside the latents)."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=7,  # 4 latent + 3 low-res image channels
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        num_class_embeds=100,  # the noise level added to the low-res image
    )
    vae = AutoencoderKL(  # three blocks: latents at a quarter of the output size
        block_out_channels=[8, 16, 16],
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        norm_num_groups=8,
        scaling_factor=0.08333,  # the x4 upscaler's
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=_clip_text(tokenizer, 32),
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder


def build_sdxl(folder: Path, seed: int = 4, second_width: int = 32) -> Path:
    """A tiny SDXL (two text encoders, size/crop conditioning), after diffusers' own tests.
    `second_width`: the second encoder's width (a single file tells the encoders apart by it)."""
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 size/crop numbers + pooled text
        cross_attention_dim=32 + second_width,  # both text encoders' states side by side
        norm_num_groups=8,
    )
    second = _clip_text(tokenizer, second_width).config
    second.projection_dim = 32
    pipe = StableDiffusionXLPipeline(
        vae=_vae((32, 64)),
        text_encoder=_clip_text(tokenizer, 32),
        text_encoder_2=CLIPTextModelWithProjection(second),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
    )
    pipe.save_pretrained(folder)
    return folder


def build_all(root: Path) -> dict[str, Path]:
    """Write the three tiny pipelines under `root`; returns their folders by model name."""
    root.mkdir(parents=True, exist_ok=True)
    return {
        SD: build_sd(root / SD),
        VIDEO: build_animatediff(root / VIDEO),
        AUDIO: build_audioldm(root / AUDIO),
    }
