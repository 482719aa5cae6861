"""Encoding pipeline outputs: PNG images, animated GIF/WebP/APNG video, 16-bit WAV sound.

Every encoder writes the same bytes for the same pixels or samples (no timestamps), so a fixed
seed gives byte-identical outputs.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lollms_server.errors import UnsupportedMediaType

if TYPE_CHECKING:
    from PIL import Image

VIDEO_MIME = {"gif": "image/gif", "webp": "image/webp", "apng": "image/apng"}


def png(image: Image.Image) -> bytes:
    """PNG bytes of an image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def animation(frames: Sequence[Image.Image], fps: int, kind: str = "gif") -> tuple[bytes, str]:
    """An animation of `frames` at `fps`, looping forever; returns (bytes, mime type)."""
    if not frames:
        raise ValueError("a video needs at least one frame")
    duration = max(1, round(1000 / fps))
    buffer = io.BytesIO()
    first, rest = frames[0], list(frames[1:])
    if kind == "gif":
        first.save(
            buffer, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0
        )
    elif kind == "webp":
        first.save(
            buffer,
            format="WEBP",
            save_all=True,
            append_images=rest,
            duration=duration,
            loop=0,
            lossless=True,
        )
    elif kind == "apng":
        first.save(
            buffer, format="PNG", save_all=True, append_images=rest, duration=duration, loop=0
        )
    else:
        raise ValueError(f"unknown video format {kind!r}")
    return buffer.getvalue(), VIDEO_MIME[kind]


def to_images(frames: Any) -> list[Image.Image]:
    """PIL images from a list of PIL images or an array of frames (values 0-1, HWC)."""
    import numpy as np
    from PIL import Image

    if isinstance(frames, list | tuple) and all(isinstance(f, Image.Image) for f in frames):
        return list(frames)
    array = np.asarray(frames, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    pixels = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return [Image.fromarray(frame) for frame in pixels]


def wav(samples: Any, rate: int) -> bytes:
    """16-bit PCM WAV of float samples in [-1, 1]: shape (n,) mono or (channels, n)."""
    import numpy as np

    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    pcm = (np.clip(array, -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(pcm.shape[0])
        writer.setsampwidth(2)
        writer.setframerate(int(rate))
        writer.writeframes(pcm.T.tobytes())
    return buffer.getvalue()


def read_image(data: bytes, mode: str = "RGB") -> Image.Image:
    """Decode an uploaded image (any format PIL reads); 415 when it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.convert(mode)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise UnsupportedMediaType(f"cannot read the input image: {exc}") from exc
