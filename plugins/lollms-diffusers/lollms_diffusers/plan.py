"""A generation request checked and turned into a `Plan` (pure Python, no torch).

Request parameters: `prompt` (the last user message), `negative_prompt` (a parameter or a text
input with that role), `width`, `height`, `steps` (or `num_inference_steps`),
`guidance_scale`, `seed`, `n`, `strength` (i2i); video: `frames` (or `num_frames`), `fps`,
`format` (gif, webp, apng, mp4), with an input video (role `input_video`) `strength` and `frames`
(the most taken from it, evenly spaced); sound: `duration` (or `audio_length_in_s`, seconds);
upscalers (i2i): `upscale` (their factor, optional).
Adapters (`loras`, ControlNet, IP-Adapter) are checked against the files found in adapters.py.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lollms_server.sdk import GenerationRequest, InputItem, InvalidRequest, MissingDependency

from .adapters import ControlChoice, StyleChoice
from .catalog import ModelEntry, single_file_hint
from .encode import MP4_MISSING
from .settings import IMAGE_FORMATS, VIDEO_FORMATS, DiffusersConfig

#: The generation type of the request -> the pipeline task (i2i with a mask is `inpaint`).
TASKS = {"tti": "tti", "i2i": "i2i", "ttv": "ttv", "ttm": "ttm"}
SEED_LIMIT = 2**63 - 1
MIN_I2I_SIDE = 64
GIF_MAX_FPS = 50  # a 20 ms frame delay: the shortest browsers honour
#: Upscaler families and their factor: i2i on them returns the input this many times larger.
UPSCALERS = {"SD x4 upscaler": 4}
#: Video families that take an input video (ttv with a video input), and their pipeline class.
V2V_PIPELINES = {"AnimateDiff": "AnimateDiffVideoToVideoPipeline"}
VIDEO_ROLES = ("input_video", "user_video")
# every request parameter the binding reads (the lollms face names the others as ignored)
PARAMETERS_READ = frozenset(
    {
        *("seed", "steps", "num_inference_steps", "guidance_scale", "n", "width", "height"),
        *("strength", "negative_prompt", "upscale", "loras", "controlnet", "ip_adapter"),
        *("frames", "num_frames", "fps", "format", "video_format", "output_format"),
        *("output_compression", "background", "duration", "audio_length_in_s"),
        "response_format",
    }
)


@dataclass(frozen=True)
class Plan:
    """Everything the worker needs to run one generation."""

    model: str
    task: str  # tti | i2i | inpaint | ttv | v2v (ttv with an input video) | ttm
    prompt: str
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int = 0
    n: int = 1
    width: int | None = None
    height: int | None = None
    strength: float | None = None
    image: bytes | None = None
    mask: bytes | None = None
    video: bytes | None = None  # v2v: the input video file
    frames: int | None = None  # v2v: the most frames taken from the input video
    fps: int = 8
    video_format: str = "gif"
    image_format: str = "png"  # png | jpeg | webp (OpenAI's `output_format`)
    quality: int | None = None  # jpeg/webp quality 0-100 (OpenAI's `output_compression`)
    duration_s: float | None = None
    loras: tuple[tuple[str, str, float], ...] = ()  # per request: (name, path, scale)
    controlnet: ControlChoice | None = None
    style: StyleChoice | None = None  # an IP-Adapter and its style_reference image
    max_size: int = 2048  # the longest output side allowed (i2i: checked once the input is read)
    scale: int = 1  # output size / input size: an upscaler's factor

    def seeds(self) -> list[int]:
        """One seed per output: `seed`, `seed + 1`, ... (so each output can be redone alone)."""
        return [(self.seed + i) % (SEED_LIMIT + 1) for i in range(self.n)]


def make_plan(request: GenerationRequest, entry: ModelEntry, settings: DiffusersConfig) -> Plan:
    """Check a request against the model and the limits; InvalidRequest names the bad value."""
    kind = request.generation_type
    if kind not in TASKS:
        raise InvalidRequest(f"diffusers does not do {kind!r}", param="generation_type")
    if entry.error:
        raise InvalidRequest(f"model {entry.name!r} cannot be used: {entry.error}", param="model")
    if entry.single_file:
        single_file_config(entry, settings)
    params = request.parameters
    image, mask = _images(request) if kind == "i2i" else (None, None)
    videos = [i.data for i in request.inputs if i.type == "video" and i.role in VIDEO_ROLES]
    video = videos[0] if kind == "ttv" and videos else None
    task = "inpaint" if mask is not None else "v2v" if video is not None else TASKS[kind]
    if kind == "i2i" and image is None:
        raise InvalidRequest("i2i needs an image input (role input_image)", param="input_data")
    _check_capability(entry, kind, task)
    _check_upscale(entry, params.get("upscale"))
    # -1 is "random" to lollms clients and diffusers UIs (as no seed): not a 400
    seed = None if params.get("seed") == -1 else _int(params, "seed", 0, SEED_LIMIT)
    video_format = _video_format(params, settings.video_format) if kind == "ttv" else None
    return Plan(
        model=entry.name,
        task=task,
        prompt=request.prompt,
        negative_prompt=_negative_prompt(request),
        steps=_int(params, ("steps", "num_inference_steps"), 1, settings.max_steps)
        or settings.default_steps,
        guidance_scale=_float(params, "guidance_scale", 0.0, 100.0),
        seed=secrets.randbelow(2**31) if seed is None else seed,
        n=min(_int(params, "n", 1, 1000) or 1, settings.max_images),
        width=_side(params, "width", settings.max_size),
        height=_side(params, "height", settings.max_size),
        max_size=settings.max_size,
        scale=UPSCALERS.get(entry.family, 1),
        strength=_float(params, "strength", 0.01, 1.0),
        image=image,
        mask=mask,
        video=video,
        frames=_int(params, ("frames", "num_frames"), 1, settings.max_frames)
        or (settings.default_frames if task == "ttv" else None)
        or (settings.max_frames if task == "v2v" else None),
        fps=_fps(params, settings.fps, video_format),
        video_format=video_format or "gif",
        image_format=_image_format(params) if kind in ("tti", "i2i") else _no_format(params, kind),
        quality=_int(params, "output_compression", 0, 100),
        duration_s=_float(params, ("duration", "audio_length_in_s"), 0.1, settings.max_audio_s)
        or (settings.default_audio_s if kind == "ttm" else None),
    )


def single_file_config(entry: ModelEntry, settings: DiffusersConfig) -> Path:
    """The local diffusers folder whose configs load a single-file checkpoint of this family."""
    configured = settings.single_file_configs.get(entry.family)
    if not configured:  # without it diffusers would fetch the family's configs from the Hub
        raise InvalidRequest(single_file_hint(entry), param="model")
    folder = Path(configured).expanduser()
    if not (folder / "model_index.json").is_file():  # else diffusers takes it for a Hub repo id
        raise InvalidRequest(
            f"single-file {entry.name!r} ({entry.family}) cannot load: "
            f'single_file_configs."{entry.family}" is not a diffusers folder (no model_index.json)',
            param="model",
        )
    return folder


def _check_capability(entry: ModelEntry, kind: str, task: str) -> None:
    needed = task if task in ("inpaint", "v2v") else kind
    if task == "i2i" and entry.needs_mask:
        raise InvalidRequest(
            f"model {entry.name!r} is an inpainting model: send a mask_image input too",
            param="input_data",
        )
    if needed in entry.capabilities:
        return
    can = ", ".join(sorted(entry.capabilities)) or "nothing"
    raise InvalidRequest(
        f"model {entry.name!r} ({entry.family}) cannot do {needed!r}; it does: {can}",
        param="model",
    )


def _check_upscale(entry: ModelEntry, value: Any) -> None:
    factor = UPSCALERS.get(entry.family)
    if value is None:
        return
    if factor is None:
        raise InvalidRequest(
            f"upscale: model {entry.name!r} ({entry.family}) is not an upscaler; send the "
            f"image as i2i to an upscaler model ({', '.join(UPSCALERS)})",
            param="upscale",
        )
    if value != factor or isinstance(value, bool):
        raise InvalidRequest(
            f"upscale: model {entry.name!r} upscales by {factor}; got {value!r}", param="upscale"
        )


def _images(request: GenerationRequest) -> tuple[bytes | None, bytes | None]:
    images = [item for item in request.inputs if item.type == "image"]
    masks = [item for item in images if item.role in ("mask_image", "mask")]
    sources = [item for item in images if item.role in ("input_image", "user_image")]
    for role, found in (("input_image", sources), ("mask_image", masks)):
        if len(found) > 1:  # never drop the others silently
            raise InvalidRequest(
                f"i2i takes one image with role {role}; got {len(found)}", param="input_data"
            )
    source: InputItem | None = sources[0] if sources else None
    return (source.data if source else None), (masks[0].data if masks else None)


def _negative_prompt(request: GenerationRequest) -> str | None:
    value = request.parameters.get("negative_prompt")
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("negative_prompt must be a string", param="negative_prompt")
    texts = [item.text for item in request.inputs_with_role("negative_prompt") if item.text]
    return value or (texts[0] if texts else None)


def _lookup(params: Mapping[str, Any], names: str | tuple[str, ...]) -> tuple[str, Any]:
    for name in (names,) if isinstance(names, str) else names:
        if params.get(name) is not None:
            return name, params[name]
    return (names if isinstance(names, str) else names[0]), None


def _int(
    params: Mapping[str, Any], names: str | tuple[str, ...], low: int, high: int
) -> int | None:
    name, value = _lookup(params, names)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name}: got {value!r}; allowed: an integer {low}-{high}", param=name)
    return value


def _float(
    params: Mapping[str, Any], names: str | tuple[str, ...], low: float, high: float
) -> float | None:
    name, value = _lookup(params, names)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{name}: got {value!r}; allowed: a number {low}-{high}", param=name)
    return float(value)


def _side(params: Mapping[str, Any], name: str, limit: int) -> int | None:
    value = _int(params, name, 8, limit)
    if value is not None and value % 8:
        raise InvalidRequest(f"{name}: got {value}; allowed: a multiple of 8", param=name)
    return value


def _fps(params: Mapping[str, Any], default: int, video_format: str | None) -> int:
    """Frames per second; a GIF plays at most GIF_MAX_FPS (its delays are in 1/100 s, and
    browsers play delays under 20 ms as 100 ms), so a faster one is refused."""
    fps = _int(params, "fps", 1, 120) or default
    if video_format == "gif" and fps > GIF_MAX_FPS:
        raise InvalidRequest(
            f"fps: got {fps}; a GIF plays at most {GIF_MAX_FPS} fps (browsers slow faster ones "
            "to 10): ask for fewer, or format webp, apng or mp4",
            param="fps",
        )
    return fps


def _video_format(params: Mapping[str, Any], default: str) -> str:
    value = params.get("format") or params.get("video_format") or default
    if value not in VIDEO_FORMATS:
        allowed = ", ".join(VIDEO_FORMATS)
        raise InvalidRequest(f"format: got {value!r}; allowed: {allowed}", param="format")
    if value == "mp4" and importlib.util.find_spec("av") is None:  # say so before generating
        raise MissingDependency(MP4_MISSING)
    return str(value)


def _image_format(params: Mapping[str, Any]) -> str:
    if params.get("background") == "transparent":  # OpenAI's; diffusion draws every pixel
        raise InvalidRequest(
            "background: 'transparent' is not supported (diffusion models draw opaque images); "
            "use 'opaque' or 'auto'",
            param="background",
        )
    value = params.get("output_format") or params.get("format") or "png"
    if value not in IMAGE_FORMATS:
        allowed = ", ".join(IMAGE_FORMATS)
        raise InvalidRequest(
            f"output_format: got {value!r}; allowed: {allowed}", param="output_format"
        )
    return str(value)


def _no_format(params: Mapping[str, Any], kind: str) -> str:
    """ttm: sound is WAV; a `format` (or lollms-audio's `response_format`) asking for anything
    else is refused, not ignored."""
    for name in ("format", "response_format"):
        value = params.get(name)
        if kind == "ttm" and value not in (None, "wav"):
            raise InvalidRequest(f"{name}: got {value!r}; allowed for {kind}: wav", param=name)
    return "png"


def i2i_size(width: int, height: int) -> tuple[int, int]:
    """The output size of an i2i request without width/height: the input's, on the 8 grid."""
    return max(MIN_I2I_SIDE, width // 8 * 8), max(MIN_I2I_SIDE, height // 8 * 8)
