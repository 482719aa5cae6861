"""`stt` of a video file: its audio track is transcribed; a video without sound is a 415."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import FormData
from lollms_audio import AudioBinding

from lollms_server.bindings import ChatMessage, GenerationRequest, InputItem
from lollms_server.errors import UnsupportedMediaType
from lollms_server.testing import serve_binding, started_binding

from .conftest import HELLO, WHISPER, words
from .test_contract_app import Client

SIDE = 32


def mp4(wav: bytes | None, frames: int = 8) -> bytes:
    """An MP4 (MPEG-4 video, `frames` grey frames) whose AAC audio track is `wav` (or none)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as box:
        video = box.add_stream("mpeg4", rate=8)
        video.width, video.height, video.pix_fmt = SIDE, SIDE, "yuv420p"
        audio = None
        if wav is not None:  # every stream is added before the first packet is muxed
            with wave.open(io.BytesIO(wav)) as reader:
                rate = reader.getframerate()
                samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
            audio = box.add_stream("aac", rate=rate)
            audio.layout = "mono"
        for index in range(frames):
            picture = np.full((SIDE, SIDE, 3), index * 30 % 256, np.uint8)
            box.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        box.mux(video.encode(None))
        if audio is not None:
            sound = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            sound.sample_rate = rate
            box.mux(audio.encode(sound))
            box.mux(audio.encode(None))
    return out.getvalue()


@pytest.fixture(scope="module")
def hello_mp4(say: Callable[[str], bytes]) -> bytes:
    """A small MP4 whose sound track is Piper saying "hello world"."""
    data = mp4(say(HELLO))
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video and container.streams.audio
    return data


@pytest_asyncio.fixture
async def client(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> AsyncIterator[Client]:
    """The app serving one `audio` instance."""
    async with serve_binding(AudioBinding, "audio", model_folders, tmp_path / "data") as served:
        yield served


def stt_request(data: bytes) -> GenerationRequest:
    """An stt request with one video input."""
    video = InputItem("video", role="input_video", data=data, mime_type="video/mp4")
    return GenerationRequest("stt", WHISPER, (ChatMessage("user", ""),), (video,))


async def test_the_binding_transcribes_a_videos_sound_track(
    model_folders: dict[str, Any], packaged: None, hello_mp4: bytes
) -> None:
    async with started_binding(AudioBinding, "audio", model_folders) as binding:
        (output,) = (await binding.generate(stt_request(hello_mp4))).outputs
        assert words(output.text) == ["hello", "world"], output.text
        with pytest.raises(UnsupportedMediaType) as caught:
            await binding.generate(stt_request(mp4(None)))
        assert "no audio track" in caught.value.message


async def test_the_api_transcribes_a_video_and_refuses_a_silent_one(
    client: Client, hello_mp4: bytes
) -> None:
    encoded = base64.b64encode(hello_mp4).decode("ascii")
    item = {"type": "video", "role": "input_video", "data": encoded, "mime_type": "video/mp4"}
    body = {"input_data": [item], "generation_type": "stt", "binding_name": "audio"}
    response = await client.post("/api/v1/generate", json={**body, "model_name": WHISPER})
    assert response.status == 200, await response.text()
    (text,) = [o for o in (await response.json())["output"] if o["type"] == "text"]
    assert words(text["data"]) == ["hello", "world"]
    form = FormData()
    form.add_field("file", hello_mp4, filename="clip.mp4", content_type="video/mp4")
    form.add_field("model", f"audio/{WHISPER}")
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.status == 200, await response.text()
    assert words((await response.json())["text"]) == ["hello", "world"]
    form = FormData()
    form.add_field("file", mp4(None), filename="silent.mp4", content_type="video/mp4")
    form.add_field("model", f"audio/{WHISPER}")
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.status == 415, await response.text()
    assert "no audio track" in (await response.json())["error"]["message"]
