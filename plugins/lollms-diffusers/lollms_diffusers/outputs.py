"""Pipeline results turned into outputs: PNG images, videos, WAV sounds, with their metadata."""

from __future__ import annotations

from typing import Any

from lollms_server.sdk import Output

from . import encode
from .plan import Plan


def _metadata(plan: Plan, seed: int, **extra: Any) -> dict[str, Any]:
    found = {"seed": seed, "model": plan.model, "steps": plan.steps, **extra}
    if plan.guidance_scale is not None:
        found["guidance_scale"] = plan.guidance_scale
    return {key: value for key, value in found.items() if value is not None}


def pictures(result: Any, plan: Plan) -> list[Output]:
    """Image outputs (PNG unless the request asked for JPEG or WebP) of a pipeline's result."""
    flagged = getattr(result, "nsfw_content_detected", None) or [None] * plan.n
    outputs = []
    for image, seed, nsfw in zip(result.images, plan.seeds(), flagged, strict=False):
        meta = _metadata(plan, seed, width=image.width, height=image.height, nsfw=nsfw)
        data, mime = encode.still(image, plan.image_format, plan.quality)
        outputs.append(Output("image", data=data, mime_type=mime, metadata=meta))
    return outputs


def videos(result: Any, plan: Plan) -> list[Output]:
    """Video outputs (GIF/WebP/APNG/MP4) of a video pipeline's result."""
    outputs = []
    for frames, seed in zip(result.frames, plan.seeds(), strict=False):
        images = encode.to_images(frames)
        data, mime = encode.animation(images, plan.fps, plan.video_format)
        first = images[0]
        meta = _metadata(
            plan, seed, frames=len(images), fps=plan.fps, width=first.width, height=first.height
        )
        outputs.append(Output("video", data=data, mime_type=mime, metadata=meta))
    return outputs


def sounds(pipe: Any, result: Any, plan: Plan) -> list[Output]:
    """WAV outputs of a sound pipeline's result, at its vocoder's rate."""
    vocoder = getattr(pipe, "vocoder", None)
    found: Any = getattr(getattr(vocoder, "config", None), "sampling_rate", None)
    found = found or getattr(getattr(pipe, "vae", None), "sampling_rate", 16000)
    rate = int(found)
    outputs = []
    for samples, seed in zip(result.audios, plan.seeds(), strict=False):
        data = encode.wav(samples, rate)
        seconds = round(samples.shape[-1] / rate, 3)
        meta = _metadata(plan, seed, sample_rate=rate, duration_s=seconds)
        outputs.append(Output("audio", data=data, mime_type="audio/wav", metadata=meta))
    return outputs
