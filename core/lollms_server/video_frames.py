"""Frames of a video: decoded with PyAV (the `[video]` extra), evenly spaced, for vision models."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .bindings import ChatMessage, InputItem
from .errors import InvalidRequest, MissingDependency, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from PIL import Image

AV_MISSING = "video input needs PyAV and Pillow: pip install 'lollms-server[video]'"
DEFAULT_FRAMES = 8
MAX_FRAMES = 64
#: Pixels of all the frames kept from one video (~800 MB as RGB): 64 frames of 2048x2048. A
#: flat video compresses to almost nothing, so its file size says nothing about this.
MAX_PIXELS = 2**28
#: Evenly spaced frames are reached by decoding the video up to its last one (nearly all of it),
#: and a flat frame compresses to a few dozen bytes: these bound that work, counted from the
#: packets before any frame is decoded. 18,000 frames is 10 minutes at 30 fps (tiny frames cost
#: per frame); 2^33 pixels is ~4,100 frames of 1080p, ~9,300 of 720p (seconds of CPU each).
MAX_DECODED_FRAMES = 18_000
MAX_DECODED_PIXELS = 2**33


def read_video(data: bytes, limit: int) -> list[Image.Image]:
    """At most `limit` RGB frames of a video file (any container FFmpeg reads), evenly spaced.

    Packets are counted first (no decoding), then only the chosen frames are kept, so a long
    video never fills memory with decoded frames; frames too big to keep that many of are a 413.
    """
    try:
        import av
    except ImportError as exc:
        raise MissingDependency(AV_MISSING) from exc
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise UnsupportedMediaType("the input video has no video stream")
            # past this count the frames sampled need too much decoding anyway: stop counting
            enough = 1 if limit == 1 else 2 * MAX_DECODED_FRAMES + 2
            packets = (p for p in container.demux(container.streams.video[0]) if p.size)
            total = sum(1 for _ in itertools.islice(packets, enough))
            stream = container.streams.video[0].codec_context
            wanted = evenly(total, limit)
            _check_pixels(stream.width, stream.height, len(wanted))
            _check_decoding(stream.width, stream.height, max(wanted, default=0) + 1)
        frames: list[Image.Image] = []
        with av.open(io.BytesIO(data)) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                _check_pixels(frame.width, frame.height, len(wanted))  # the size may change
                if index in wanted:
                    frames.append(frame.to_image().convert("RGB"))
                if len(frames) == len(wanted):
                    break
    except av.FFmpegError as exc:
        raise UnsupportedMediaType(f"cannot read the input video: {exc}") from exc
    if not frames:
        raise UnsupportedMediaType("the input video has no frames")
    return frames


def _check_decoding(width: int, height: int, frames: int) -> None:
    """413 when reaching the wanted frames means decoding more than MAX_DECODED_FRAMES frames
    or MAX_DECODED_PIXELS pixels."""
    if frames > MAX_DECODED_FRAMES or width * height * frames > MAX_DECODED_PIXELS:
        raise PayloadTooLarge(
            f"the input video needs {frames} (or more) frames of {width}x{height} decoded, over "
            f"{MAX_DECODED_FRAMES} frames or {MAX_DECODED_PIXELS} pixels: send a shorter or "
            "smaller video",
            param="input_data",
        )


def _check_pixels(width: int, height: int, count: int) -> None:
    if width * height * count > MAX_PIXELS:
        raise PayloadTooLarge(
            f"the input video is {width}x{height}: {count} frames of it are over {MAX_PIXELS} "
            "pixels; ask for fewer frames (parameters.frames) or send a smaller video",
            param="input_data",
        )


def evenly(total: int, limit: int) -> set[int]:
    """`limit` frame indices spread evenly over `total` frames (all of them when fewer)."""
    if total <= limit:
        return set(range(total))
    return {index * total // limit for index in range(limit)}


def frame_count(parameters: dict[str, Any]) -> int:
    """`parameters.frames` (taken out of the parameters): how many frames to sample."""
    value = parameters.pop("frames", None)
    if value is None:
        return DEFAULT_FRAMES
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FRAMES:
        raise InvalidRequest(
            f"parameters.frames must be an integer from 1 to {MAX_FRAMES}", param="parameters"
        )
    return value


def _png_frames(video: InputItem, count: int) -> list[InputItem]:
    images = []
    for index, frame in enumerate(read_video(video.data or b"", count)):
        buffer = io.BytesIO()
        frame.save(buffer, format="PNG")
        metadata = {**(video.metadata or {}), "frame": index}
        images.append(
            InputItem(
                "image",
                role="input_image",
                data=buffer.getvalue(),
                mime_type="image/png",
                metadata=metadata,
            )
        )
    return images


async def videos_as_frames(
    messages: Sequence[ChatMessage], inputs: Sequence[InputItem], count: int
) -> tuple[list[ChatMessage], list[InputItem]]:
    """Each `video` input becomes `count` PNG frames, images of the last user message (decoded
    off the event loop); other inputs are kept."""
    frames: list[InputItem] = []
    kept: list[InputItem] = []
    for item in inputs:
        if item.type == "video":
            frames += await asyncio.to_thread(_png_frames, item, count)
        else:
            kept.append(item)
    chat = list(messages)
    users = [index for index, message in enumerate(chat) if message.role == "user"]
    if not users:
        raise InvalidRequest("a video for a vision model needs a user prompt", param="input_data")
    last = chat[users[-1]]
    chat[users[-1]] = dataclasses.replace(last, images=(*last.images, *frames))
    return chat, [*kept, *frames]
