"""Video-to-video (issue 19): a ttv request with an `input_video` item (frames read by PyAV)."""

from __future__ import annotations

import base64
import io
import wave

import pytest
from lollms_diffusers import DiffusersBinding, encode
from PIL import Image

from lollms_server.bindings import InputItem
from lollms_server.errors import InvalidRequest, UnsupportedMediaType

from .conftest import SD, VIDEO, Client, make_request
from .test_generation import outputs
from .test_server import body, generate

ROLE = "input_video"


def clip(kind: str = "mp4", frames: int = 8, shade: int = 0) -> bytes:
    """A small moving-square video (32x32) in `kind` (mp4, gif)."""
    images = []
    for index in range(frames):
        image = Image.new("RGB", (32, 32), (shade, 40, 200 - shade))
        image.paste((255, 255, 0), (index * 3, 8, index * 3 + 8, 16))
        images.append(image)
    return encode.animation(images, 8, kind)[0]


def video_item(data: bytes, mime: str = "video/mp4") -> InputItem:
    """An input video."""
    return InputItem("video", role=ROLE, data=data, mime_type=mime)


def frame_count(data: bytes) -> int:
    """Frames of a GIF output."""
    with Image.open(io.BytesIO(data)) as gif:
        return int(gif.n_frames)


def silence() -> bytes:
    """A WAV file: no video stream at all."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(b"\0\0" * 800)
    return buffer.getvalue()


async def test_an_input_video_is_redrawn_frame_by_frame(binding: DiffusersBinding) -> None:
    models = {info.name: info for info in await binding.list_models()}
    assert {"ttv", "v2v"} <= models[VIDEO].capabilities
    assert "v2v" not in models[SD].capabilities
    source = (video_item(clip()),)
    (first,) = await outputs(binding, "ttv", VIDEO, inputs=source, seed=1, frames=4, strength=0.6)
    (again,) = await outputs(binding, "ttv", VIDEO, inputs=source, seed=1, frames=4, strength=0.6)
    (plain,) = await outputs(binding, "ttv", VIDEO, seed=1, width=32, height=32, frames=4)
    other = (video_item(clip(shade=150)),)
    (changed,) = await outputs(binding, "ttv", VIDEO, inputs=other, seed=1, frames=4, strength=0.6)
    assert first.data == again.data and len({first.data, plain.data, changed.data}) == 3
    assert first.metadata["frames"] == frame_count(first.data) == 4
    assert (first.metadata["width"], first.metadata["height"]) == (64, 64)  # i2i's least side
    gif = (video_item(clip("gif", frames=3), "image/gif"),)
    (from_gif,) = await outputs(binding, "ttv", VIDEO, inputs=gif, seed=1, strength=0.6)
    assert frame_count(from_gif.data) == 3  # every frame of a short video


@pytest.mark.parametrize(
    ("model", "data", "parameters", "error", "words"),
    [
        (VIDEO, b"not a video at all", {}, UnsupportedMediaType, ("input video",)),
        (VIDEO, silence(), {}, UnsupportedMediaType, ("no video stream",)),
        (SD, clip(), {}, InvalidRequest, (SD, "v2v")),
        (VIDEO, clip(), {"strength": 0.1}, InvalidRequest, ("strength", "steps")),
    ],
)
async def test_bad_video_inputs_are_refused_naming_them(
    binding: DiffusersBinding,
    model: str,
    data: bytes,
    parameters: dict[str, float],
    error: type[Exception],
    words: tuple[str, ...],
) -> None:
    request = make_request("ttv", model, inputs=(video_item(data),), **parameters)
    with pytest.raises(error) as caught:
        await binding.generate(request)
    for word in words:
        assert word in str(caught.value), caught.value


async def test_api_video_to_video_same_seed_same_bytes_and_4xx(client: Client) -> None:
    encoded = base64.b64encode(clip()).decode()
    item = {"type": "video", "role": ROLE, "data": encoded, "mime_type": "video/mp4"}
    (first,) = await generate(client, body("ttv", VIDEO, item, seed=2, frames=4, strength=0.6))
    (again,) = await generate(client, body("ttv", VIDEO, item, seed=2, frames=4, strength=0.6))
    assert first["data"] == again["data"] and first["metadata"]["frames"] == 4
    garbage = {**item, "data": base64.b64encode(b"garbage").decode()}
    for payload, status, word in (
        (body("ttv", VIDEO, garbage, seed=2), 415, "input video"),
        (body("tti", SD, item), 400, ROLE),
    ):
        response = await client.post("/api/v1/generate", json=payload)
        text = await response.text()
        assert response.status == status and word in text, text
