"""A `video` input to a vision model: `parameters.frames` evenly spaced frames (PyAV) become the
user message's images; a binding without vision, a bad count or a file that is no video is a
4xx/501 naming it."""

from __future__ import annotations

import base64
import io
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig
from PIL import Image

from lollms_server.bindings import Binding, GenerationRequest
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
FRAMES = 12  # the test video's length; frame i is grey level 20 * i


class Seeing(EchoBinding):
    """Echo with vision: answers with what it saw (frame index, size, grey level of each image)."""

    name = "seeing"
    capabilities = EchoBinding.capabilities | {"vision"}

    def _answer(self, request: GenerationRequest) -> str:
        seen = []
        for image in request.messages[-1].images:
            picture = Image.open(io.BytesIO(image.data)).convert("L")
            level = picture.getpixel((picture.width // 2, picture.height // 2))
            seen.append(f"f{image.metadata['frame']}-{picture.width}x{picture.height}-{level}")
        return " ".join(seen) or "nothing"


class SeeingPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Seeing]


def grey_video(frames: int = FRAMES, size: tuple[int, int] = (32, 24)) -> bytes:
    """An MP4 (MPEG-4 part 2) of `frames` flat grey frames, getting lighter."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            picture = Image.new("RGB", size, (20 * index,) * 3)
            frame = av.VideoFrame.from_image(picture)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.fixture
async def client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """`seeing` (vision) next to `echo` (no vision)."""
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo", "delay_ms": 0},
                "seeing": {"type": "seeing", "default_model": "echo", "delay_ms": 0},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    return await make_client(config, plugins=load_plugins(extra={"seeing": SeeingPlugin()}))


def body(binding: str, video: bytes, **parameters: Any) -> dict[str, Any]:
    """A text generation with a prompt and a video."""
    return {
        "binding_name": binding,
        "input_data": [
            {"type": "text", "role": "user_prompt", "data": "What happens?"},
            {"type": "video", "data": base64.b64encode(video).decode(), "mime_type": "video/mp4"},
        ],
        "parameters": parameters,
    }


def seen(answer: dict[str, Any]) -> list[tuple[int, str, int]]:
    """(frame index, size, grey level) of each image the binding got."""
    parts = [item.split("-") for item in answer["output"][0]["data"].split()]
    return [(int(index[1:]), size, int(level)) for index, size, level in parts]


async def test_frames_are_sampled_evenly_for_a_vision_model(client: Client) -> None:
    response = await client.post("/api/v1/generate", json=body("seeing", grey_video(), frames=4))
    answer = await response.json()
    assert response.status == 200, answer
    frames = seen(answer)
    assert [index for index, _, _ in frames] == [0, 1, 2, 3]
    assert {size for _, size, _ in frames} == {"32x24"}
    levels = [level for _, _, level in frames]
    # frames 0, 3, 6, 9 of 12: grey 0, 60, 120, 180 (within the codec's loss)
    assert levels == sorted(levels) and levels[-1] - levels[0] > 120, levels
    for expected, level in zip((0, 60, 120, 180), levels, strict=True):
        assert abs(level - expected) < 20, levels


async def test_frames_default_and_a_short_video_gives_all_it_has(client: Client) -> None:
    short = await client.post("/api/v1/generate", json=body("seeing", grey_video(3), frames=10))
    assert [index for index, _, _ in seen(await short.json())] == [0, 1, 2]
    default = await client.post("/api/v1/generate", json=body("seeing", grey_video()))
    assert len(seen(await default.json())) == 8


async def test_frames_of_a_model_without_vision_is_a_501_naming_it(client: Client) -> None:
    response = await client.post("/api/v1/generate", json=body("echo", grey_video(), frames=4))
    answer = await response.json()
    assert response.status == 501, answer
    assert "video" in answer["error"]["message"] and answer["error"]["param"] == "input_data"
    # without `frames`, a binding without vision gets the video as it came (upstream's shape)
    plain = await client.post("/api/v1/generate", json=body("echo", grey_video()))
    assert plain.status == 200, await plain.text()


@pytest.mark.parametrize("frames", [0, 65, "4", 2.5, True])
async def test_a_bad_frame_count_is_a_400(client: Client, frames: Any) -> None:
    response = await client.post(
        "/api/v1/generate", json=body("seeing", grey_video(), frames=frames)
    )
    answer = await response.json()
    assert response.status == 400, answer
    assert "parameters.frames" in answer["error"]["message"]


async def test_a_file_that_is_no_video_is_a_415(client: Client) -> None:
    response = await client.post("/api/v1/generate", json=body("seeing", b"not a video at all"))
    answer = await response.json()
    assert response.status == 415, answer
    assert "video" in answer["error"]["message"]


async def test_frames_too_big_to_hold_are_a_413_before_they_are_decoded(client: Client) -> None:
    """A 1 MB MP4 of 64 flat 2064x2064 frames decoded into 820 MB of images (a 36 KB one of
    4096x4096 frames, 4.5 GB): frames x width x height is bounded before any frame is kept."""
    big = grey_video(64, (2064, 2064))
    assert len(big) < 2_000_000
    response = await client.post("/api/v1/generate", json=body("seeing", big, frames=64))
    answer = await response.json()
    assert response.status == 413, answer
    assert "2064x2064" in answer["error"]["message"] and "frames" in answer["error"]["message"]
    fewer = await client.post("/api/v1/generate", json=body("seeing", big, frames=2))
    assert fewer.status == 200, await fewer.text()
    assert [size for _, size, _ in seen(await fewer.json())] == ["2064x2064"] * 2


def flat_h264(frames: int, size: tuple[int, int], repeats: int) -> bytes:
    """A raw H.264 stream of `frames` black frames, `repeats` times over: a few dozen bytes a
    frame, however many frames and pixels it decodes to."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "51"}
        frame = av.VideoFrame.from_image(Image.new("RGB", size))
        for _ in range(frames):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue() * repeats


@pytest.mark.parametrize(
    ("frames", "size", "repeats"),
    [(1000, (32, 32), 24), (100, (1920, 1080), 48)],
    ids=["24000-frames", "4800-frames-of-1080p"],
)
async def test_a_video_too_long_to_decode_is_a_413_before_decoding(
    client: Client, frames: int, size: tuple[int, int], repeats: int
) -> None:
    """Sampling evenly decodes the video up to its last sampled frame (the 8th of 8: 7/8 of it),
    so that is bounded by frames (MAX_DECODED_FRAMES) and pixels (MAX_DECODED_PIXELS), counted
    from its packets before any frame is decoded.
    Before, a 1.4 MB stream of 40,000 flat 720p frames took 10.5 s of the server's CPU (a
    64 MB body: minutes, in a thread that runs on when the client leaves)."""
    video = flat_h264(frames, size, repeats)
    assert len(video) < 1_000_000
    response = await client.post("/api/v1/generate", json=body("seeing", video))
    answer = await response.json()
    assert response.status == 413, answer
    assert "shorter" in answer["error"]["message"], answer
    ok = await client.post("/api/v1/generate", json=body("seeing", flat_h264(50, size, 2)))
    assert ok.status == 200, await ok.text()
