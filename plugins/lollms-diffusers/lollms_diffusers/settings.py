"""Settings of a `diffusers` binding instance (the `[bindings.<name>]` table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields, validate

from lollms_server.sdk import SettingsSchema, Whole

DEVICES = validate.Regexp(
    r"^(auto|cpu|mps|cuda(:\d+)?)$", error="one of auto, cpu, mps, cuda, cuda:<index>"
)
DTYPES = ("auto", "fp32", "fp16", "bf16")
OFFLOAD = ("none", "model", "sequential")
VIDEO_FORMATS = ("gif", "webp", "apng", "mp4")
IMAGE_FORMATS = ("png", "jpeg", "webp")  # OpenAI's `output_format` values
SCHEDULER = validate.Regexp(
    r"^[A-Z][A-Za-z0-9]*Scheduler$", error="a diffusers scheduler class name, e.g. DDIMScheduler"
)


class LoraSchema(Schema):
    """One LoRA: a .safetensors file (or a folder holding one), its weight, the models it fits."""

    path = fields.String(required=True, validate=validate.Length(min=1))
    scale = fields.Float(load_default=1.0, validate=validate.Range(-10.0, 10.0))
    models = fields.List(
        fields.String(),
        load_default=list,
        metadata={"help": "model names it applies to; empty: every image model"},
    )


@dataclass(frozen=True)
class DiffusersConfig:
    """A `diffusers` instance's loaded settings (the defaults are `DiffusersSettings`')."""

    models_folders: list[str]
    use_data_dir: bool
    device: str
    dtype: str
    scheduler: str | None
    safety_checker: bool
    attention_slicing: bool
    vae_tiling: bool
    cpu_offload: str
    loras: list[dict[str, Any]]
    single_file_configs: dict[str, str]
    threads: int | None
    max_loaded: int
    default_steps: int | None
    max_steps: int
    max_size: int
    max_images: int
    default_frames: int
    max_frames: int
    fps: int
    video_format: str
    default_audio_s: float
    max_audio_s: float


class DiffusersSettings(SettingsSchema):
    """Where the diffusion models are, how they run, and the request limits."""

    Settings = DiffusersConfig

    models_folders = fields.List(
        fields.String(validate=validate.Length(min=1)),
        load_default=list,
        metadata={"help": "extra folders of models (diffusers folders or single files)"},
    )
    use_data_dir = fields.Boolean(
        load_default=True,
        metadata={"help": "also scan <data dir>/models/{tti,i2i,ttv,ttm}"},
    )
    device = fields.String(load_default="auto", validate=DEVICES)
    dtype = fields.String(load_default="auto", validate=validate.OneOf(DTYPES))
    scheduler = fields.String(load_default=None, allow_none=True, validate=SCHEDULER)
    safety_checker = fields.Boolean(load_default=True)
    attention_slicing = fields.Boolean(load_default=False)
    vae_tiling = fields.Boolean(load_default=False)
    cpu_offload = fields.String(load_default="none", validate=validate.OneOf(OFFLOAD))
    loras = fields.List(fields.Nested(LoraSchema), load_default=list)
    single_file_configs = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.Length(min=1)),
        load_default=dict,
        metadata={"help": "family (e.g. 'SD 1.x') -> local diffusers folder of its configs"},
    )
    threads = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 1024))
    max_loaded = Whole(load_default=1, validate=validate.Range(1, 64))
    default_steps = Whole(
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, 1000),
        metadata={"help": "steps when a request names none; empty: the pipeline's default"},
    )
    max_steps = Whole(load_default=150, validate=validate.Range(1, 1000))
    max_size = Whole(load_default=2048, validate=validate.Range(8, 16384))
    max_images = Whole(load_default=4, validate=validate.Range(1, 64))
    default_frames = Whole(load_default=16, validate=validate.Range(1, 1024))
    max_frames = Whole(load_default=64, validate=validate.Range(1, 1024))
    fps = Whole(load_default=8, validate=validate.Range(1, 120))
    video_format = fields.String(load_default="gif", validate=validate.OneOf(VIDEO_FORMATS))
    default_audio_s = fields.Float(load_default=5.0, validate=validate.Range(0.1, 600))
    max_audio_s = fields.Float(load_default=30.0, validate=validate.Range(0.1, 600))
