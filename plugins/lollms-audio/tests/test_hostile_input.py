"""Hostile inputs through the real app: a small upload that decodes to hours of audio, a text
with control characters. Each is a 4xx in the OpenAI error shape, never a 5xx or a dead server.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy
import pytest_asyncio
from aiohttp import FormData
from lollms_audio import AudioBinding

from lollms_server.keys import KEYSTORE
from lollms_server.testing import serve_binding

from .conftest import VOICE, WHISPER
from .test_contract_app import Client, audio_item, generate

MAX_AUDIO_S = 120


def silent_flac(seconds: float, rate: int = 8000) -> bytes:
    """FLAC of digital silence: about 180 bytes a second, whatever the length."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        block = numpy.zeros((1, rate * 60), dtype="<i2")
        for start in range(0, int(seconds * rate), block.shape[1]):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@pytest_asyncio.fixture
async def client(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> AsyncIterator[Client]:
    """The app over one `audio` instance that takes at most two minutes of input audio."""
    settings = {**model_folders, "max_audio_s": MAX_AUDIO_S}
    async with serve_binding(AudioBinding, "audio", settings, tmp_path / "data") as served:
        yield served


async def transcribe(client: Client, data: bytes) -> tuple[int, Any, float]:
    """POST /v1/audio/transcriptions; (status, body, seconds taken)."""
    form = FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", data, filename="long.flac", content_type="audio/flac")
    started = time.perf_counter()
    response = await client.post("/v1/audio/transcriptions", data=form)
    return response.status, await response.json(), time.perf_counter() - started


async def test_audio_longer_than_max_audio_s_is_413_before_it_is_decoded(client: Client) -> None:
    """An hour of silence is a 650 KB FLAC; decoded whole it took 3 GB and 74 s of whisper."""
    bomb = silent_flac(3600)
    assert len(bomb) < 1_000_000
    status, body, seconds = await transcribe(client, bomb)
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert (
        f"{MAX_AUDIO_S}" in body["error"]["message"] and "max_audio_s" in body["error"]["message"]
    )
    assert seconds < 10
    convert = {"mode": "convert", "sample_rate": 192_000, "channels": 2}
    status, answer = await generate(client, "audio2audio", [audio_item(bomb)], parameters=convert)
    assert status == 413, answer
    status, body, _ = await transcribe(client, silent_flac(MAX_AUDIO_S - 60))
    assert status == 200, body  # within the limit: transcribed as before


async def test_control_characters_in_speech_input_are_not_a_backend_error(client: Client) -> None:
    """A NUL reached espeak-ng's phonemizer: 502 "embedded null character"; control characters
    have no sound, so they are spoken as spaces and a text of nothing else is a 400."""
    response = await client.post("/v1/audio/speech", json={"input": "hello\x00world\x07"})
    assert response.status == 200, await response.text()
    assert (await response.read())[:4] == b"RIFF"
    response = await client.post("/v1/audio/speech", json={"input": "\x00\x01\x02"})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["param"] == "input"


async def test_a_key_allowed_one_voice_cannot_reach_other_models_through_it(
    client: Client,
) -> None:
    """Naming the allowed voice for stt (a 404 now: a voice does not transcribe), or naming
    another voice in `voice`, used models the key may not use; the refusal names none of them."""
    store = client.server.app[KEYSTORE]
    key, _ = await store.create("voice-only", "user", allowed_models=[f"audio/{VOICE}"])
    headers = {"X-API-Key": key, "Host": "evil.example"}  # not local: the key decides
    speech = await client.post(
        "/v1/audio/speech", json={"input": "hi", "model": f"audio/{VOICE}"}, headers=headers
    )
    assert speech.status == 200, await speech.text()
    form = FormData()
    form.add_field("model", f"audio/{VOICE}")
    form.add_field("file", silent_flac(2), filename="a.flac", content_type="audio/flac")
    heard = await client.post("/v1/audio/transcriptions", data=form, headers=headers)
    assert heard.status == 404, await heard.text()
    assert WHISPER not in await heard.text()
    spoken = {"text": "hi", "voice": "espeak-ng"}  # a voice name, no instance: a parameter
    other = await client.post("/text2Audio", json=spoken, headers=headers)
    assert other.status in (403, 404), await other.text()  # 404 where espeak-ng is not on PATH
    revoice = {
        "input_data": [audio_item(silent_flac(2))],
        "generation_type": "audio2audio",
        "binding_name": "audio",
        "model_name": VOICE,
    }
    answer = await client.post("/api/v1/generate", json=revoice, headers=headers)
    assert answer.status == 403, await answer.text()  # its whisper model is not allowed
