"""Encoding pipeline outputs: PNG images, GIF/WebP/APNG/MP4 video, 16-bit WAV sound.

Every encoder writes the same bytes for the same pixels or samples (no timestamps), so a fixed
seed gives byte-identical outputs. MP4 uses PyAV (`av`, whose wheels bundle FFmpeg with
libx264), imported only when an MP4 is asked for.
"""

from __future__ import annotations

import io
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lollms_server.sdk import MissingDependency, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from av.video.stream import VideoStream
    from PIL import Image

VIDEO_MIME = {"gif": "image/gif", "webp": "image/webp", "apng": "image/apng", "mp4": "video/mp4"}
UNREADABLE = (
    "cannot read the input image: it is no image format PIL reads (send PNG, JPEG, WebP...)"
)
#: MP4 video encoders in order of preference, with their options: H.264 (libx264: near
#: lossless at CRF 18; OpenH264), else MPEG-4 part 2 (built into FFmpeg, always there).
MP4_CODECS: tuple[tuple[str, dict[str, str]], ...] = (
    ("libx264", {"crf": "18", "preset": "medium"}),
    ("libopenh264", {}),
    ("mpeg4", {}),
)
MP4_MISSING = "MP4 video needs PyAV: pip install av"


def png(image: Image.Image) -> bytes:
    """PNG bytes of an image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def still(image: Image.Image, fmt: str, quality: int | None = None) -> tuple[bytes, str]:
    """An image as `png`, `jpeg` (no alpha: on RGB) or `webp` bytes, with its MIME type;
    `quality` 0-100 for the lossy two (Pillow's default, 75, when None)."""
    if fmt == "png":
        return png(image), "image/png"
    buffer = io.BytesIO()
    options = {} if quality is None else {"quality": quality}
    picture = image.convert("RGB") if fmt == "jpeg" and image.mode != "RGB" else image
    picture.save(buffer, format=fmt.upper(), **options)
    return buffer.getvalue(), f"image/{fmt}"


def animation(frames: Sequence[Image.Image], fps: int, kind: str = "gif") -> tuple[bytes, str]:
    """`frames` at `fps` as GIF/WebP/APNG (looping forever) or MP4; returns (bytes, mime)."""
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
    elif kind == "mp4":
        return mp4(frames, fps), VIDEO_MIME[kind]
    else:
        raise ValueError(f"unknown video format {kind!r}")
    return buffer.getvalue(), VIDEO_MIME[kind]


def mp4(frames: Sequence[Image.Image], fps: int) -> bytes:
    """An MP4 of `frames` at `fps`: H.264 (yuv420p, even sides) when FFmpeg has an encoder."""
    import numpy as np

    try:
        import av
    except ImportError as exc:
        raise MissingDependency(MP4_MISSING) from exc
    codec, options = mp4_codec()
    width, height = frames[0].width // 2 * 2, frames[0].height // 2 * 2  # yuv420p: even sides
    if not width or not height:
        raise ValueError(f"a {frames[0].width}x{frames[0].height} frame is too small for MP4")
    # faststart (the index before the data, so browsers play while loading) rewrites the file
    # in a second pass, which needs a real file rather than a BytesIO
    with tempfile.TemporaryDirectory(prefix="lollms-mp4-") as folder:
        path = Path(folder) / "video.mp4"
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = cast("VideoStream", out.add_stream(codec, rate=fps, options=options))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for image in frames:
                pixels = np.asarray(image.convert("RGB"))[:height, :width]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))  # flush the encoder's delayed frames
        return path.read_bytes()


def mp4_codec() -> tuple[str, dict[str, str]]:
    """The first MP4 video encoder of `MP4_CODECS` that this FFmpeg build has."""
    import av

    for name, options in MP4_CODECS:
        try:
            av.Codec(name, "w")
        except ValueError:  # av.codec.codec.UnknownCodecError
            continue
        return name, options
    raise MissingDependency(f"{MP4_MISSING} (this FFmpeg build has no MP4 video encoder)")


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


def image_size(data: bytes) -> tuple[int, int]:
    """An uploaded image's width and height from its header, without decoding its pixels;
    415 when it is no image, 413 when it has more pixels than `read_image` decodes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            size = opened.size
    except UnidentifiedImageError as exc:  # its message holds the repr of our buffer
        raise UnsupportedMediaType(UNREADABLE) from exc
    except (Image.DecompressionBombError, OSError, ValueError) as exc:
        raise UnsupportedMediaType(f"cannot read the input image: {exc}") from exc
    limit = Image.MAX_IMAGE_PIXELS  # None: the embedding program turned PIL's check off
    if limit and size[0] * size[1] > limit:
        raise PayloadTooLarge(
            f"the input image ({size[0]}x{size[1]}) has {size[0] * size[1]} pixels, more than "
            f"{limit} (where PIL warns of a decompression bomb): send it smaller",
            param="input_data",
        )
    return size


def read_image(data: bytes, mode: str = "RGB") -> Image.Image:
    """Decode an uploaded image (any format PIL reads); 415 when it is not one, 413 (before
    decoding) when it has more than PIL's MAX_IMAGE_PIXELS (`image_size`)."""
    from PIL import Image, UnidentifiedImageError

    image_size(data)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.convert(mode)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise UnsupportedMediaType(f"cannot read the input image: {exc}") from exc


def read_mask(data: bytes) -> Image.Image:
    """Decode an inpainting mask as L, white = repaint. A mask with transparent pixels is
    OpenAI's kind (the image, transparent where it must be edited): its alpha, inverted."""
    from PIL import ImageOps

    image = read_image(data, "RGBA")
    alpha = image.getchannel("A")
    if alpha.getextrema()[0] == 255:  # fully opaque: an ordinary black-and-white mask
        return image.convert("L")
    return ImageOps.invert(alpha)
