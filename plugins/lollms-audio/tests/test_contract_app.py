"""The audio binding behind the real app: the openai SDK, the lollms API, uploads, errors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from lollms_audio import AudioBinding
from lollms_audio.formats import Pcm, sniff_audio, wav_bytes
from openai import AsyncOpenAI

from lollms_server.app import create_app
from lollms_server.config import Config, InstanceConfig, prepare_data_dir
from lollms_server.plugins import load_plugins
from lollms_server.testing import serve_binding

from .conftest import FOX, HELLO, SENTENCE, VOICE, WHISPER, link_voice, wav_info, words

Client = TestClient[Any, Any]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest_asyncio.fixture
async def client(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> AsyncIterator[Client]:
    """The app serving one `audio` instance, the default for tts, stt and audio2audio."""
    async with serve_binding(AudioBinding, "audio", model_folders, tmp_path / "data") as served:
        yield served


@pytest_asyncio.fixture
async def sdk(client: Client) -> AsyncIterator[AsyncOpenAI]:
    """The openai SDK pointed at the app."""
    async with AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="x", max_retries=0, timeout=120
    ) as api:
        yield api


def audio_item(data: bytes, mime: str = "audio/wav") -> dict[str, Any]:
    """A lollms `input_data` audio item."""
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "audio", "role": "input_audio", "data": encoded, "mime_type": mime}


async def generate(client: Client, kind: str, items: list[dict[str, Any]], **extra: Any) -> Any:
    """POST /api/v1/generate; returns (status, body)."""
    body = {"input_data": items, "generation_type": kind, "binding_name": "audio", **extra}
    response = await client.post("/api/v1/generate", json=body)
    return response.status, await response.json()


async def test_openai_sdk_speech_then_transcription(sdk: AsyncOpenAI) -> None:
    """audio.speech.create gives a WAV that audio.transcriptions.create turns into its words."""
    speech = await sdk.audio.speech.create(model="tts-1", voice="alloy", input=HELLO)
    audio = speech.content
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    assert wav_info(audio)[:2] == (22050, 1)
    transcript = await sdk.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", audio, "audio/wav")
    )
    assert words(transcript.text) == ["hello", "world"], transcript.text
    named = await sdk.audio.transcriptions.create(
        model=f"audio/{WHISPER}", file=("speech.wav", audio, "audio/wav"), response_format="text"
    )
    assert words(str(named)) == ["hello", "world"]


async def test_openai_sdk_verbose_json_and_subtitles(
    sdk: AsyncOpenAI, say: Callable[[str], bytes]
) -> None:
    """verbose_json carries language, duration, segments and word times; srt has cues."""
    audio = say(SENTENCE)
    verbose = await sdk.audio.transcriptions.create(
        model="whisper-1",
        file=("speech.wav", audio, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "en"
    assert verbose.duration == pytest.approx(wav_info(audio)[2], abs=0.05)
    assert set(words(SENTENCE)) <= set(words(verbose.text))
    assert verbose.segments and verbose.segments[0].text.strip()
    assert verbose.words and [w.word for w in verbose.words][:2] == ["Please", "call"]
    assert all(w.start <= w.end for w in verbose.words)
    srt = await sdk.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", audio, "audio/wav"), response_format="srt"
    )
    assert "00:00:00,000 --> 00:00:0" in str(srt) and "Stella" in str(srt)


async def test_word_granularity_gets_words_when_the_instance_has_them_off(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> None:
    """`timestamp_granularities=["word"]` asks for word times: an instance whose
    `word_timestamps` is off (its default for other calls) still gives them to that request."""
    settings = {**model_folders, "word_timestamps": False}
    async with serve_binding(AudioBinding, "audio", settings, tmp_path / "data") as served:
        url = str(served.make_url("/v1"))
        async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=120) as api:
            audio = (
                await api.audio.speech.create(model="tts-1", voice="alloy", input=HELLO)
            ).content
            file = ("speech.wav", audio, "audio/wav")
            plain = await api.audio.transcriptions.create(
                model="whisper-1", file=file, response_format="verbose_json"
            )
            asked = await api.audio.transcriptions.create(
                model="whisper-1",
                file=file,
                response_format="verbose_json",
                timestamp_granularities=["word"],
            )
    assert plain.words is None
    assert asked.words and [w.word.strip(".").lower() for w in asked.words] == ["hello", "world"]


@pytest.mark.parametrize(("fmt", "magic"), [("mp3", "mp3"), ("flac", "flac"), ("opus", "ogg")])
async def test_openai_sdk_speech_formats(sdk: AsyncOpenAI, fmt: str, magic: str) -> None:
    """mp3, flac and opus are made by the binding and transcribe back."""
    speech = await sdk.audio.speech.create(
        model=f"audio/{VOICE}",
        voice=VOICE,
        input=FOX,
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert sniff_audio(speech.content) == magic
    heard = await sdk.audio.transcriptions.create(
        model="whisper-1", file=(f"speech.{fmt}", speech.content)
    )
    assert set(words(FOX)) <= set(words(heard.text)), heard.text


async def test_openai_sdk_pcm_and_speed(sdk: AsyncOpenAI) -> None:
    """pcm is raw 16-bit samples; speed makes speech shorter."""
    raw = await sdk.audio.speech.create(
        model="tts-1", voice="alloy", input=FOX, response_format="pcm"
    )
    assert raw.content[:4] != b"RIFF" and len(raw.content) % 2 == 0
    # OpenAI's pcm is 24 kHz: clients play it so (Piper speaks at 22,050 Hz: 9% too fast)
    wav = await sdk.audio.speech.create(model="tts-1", voice="alloy", input=FOX)
    assert len(raw.content) / 2 / 24000 == pytest.approx(wav_info(wav.content)[2], abs=0.01)
    fast = await sdk.audio.speech.create(
        model="tts-1", voice="alloy", input=FOX, response_format="pcm", speed=2.0
    )
    assert len(fast.content) < len(raw.content) * 0.75


async def test_an_empty_upload_is_a_400_saying_so(sdk: AsyncOpenAI, client: Client) -> None:
    """An empty audio file is a 400 saying it is empty, on /v1 and the lollms API: before, the
    empty item was skipped and the answer said no audio input was sent at all."""
    with pytest.raises(openai.BadRequestError, match="the audio input is empty"):
        await sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"", "audio/wav"))
    status, body = await generate(client, "stt", [{"type": "audio", "data": ""}])
    assert status == 400 and "the audio input is empty" in body["error"]["message"], body


async def test_nothing_heard_gives_no_segments_and_empty_subtitles(sdk: AsyncOpenAI) -> None:
    """Audio where whisper hears nothing (here: no samples at all; a silent recording with
    VAD alike): no segments and empty subtitles, as OpenAI answers. Before, the face made up
    one segment with empty text spanning the audio: an SRT/VTT cue without text."""
    silent = wav_bytes(Pcm(b"", 16000, 1))
    file = ("silence.wav", silent, "audio/wav")
    verbose = await sdk.audio.transcriptions.create(
        model="whisper-1", file=file, response_format="verbose_json"
    )
    assert verbose.text == "" and verbose.segments == []
    srt = await sdk.audio.transcriptions.create(model="whisper-1", file=file, response_format="srt")
    vtt = await sdk.audio.transcriptions.create(model="whisper-1", file=file, response_format="vtt")
    assert str(srt).strip() == "" and str(vtt).strip() == "WEBVTT"


async def test_openai_sdk_errors(sdk: AsyncOpenAI, say: Callable[[str], bytes]) -> None:
    """Non-audio uploads are 415; a language tiny.en lacks is 400; an unknown voice 404."""
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.audio.transcriptions.create(
            model="whisper-1", file=("picture.png", PNG, "image/png")
        )
    assert caught.value.status_code == 415
    with pytest.raises(openai.BadRequestError, match="English-only"):
        await sdk.audio.transcriptions.create(
            model="whisper-1", file=("speech.wav", say(HELLO), "audio/wav"), language="fr"
        )
    with pytest.raises(openai.NotFoundError):
        await sdk.audio.speech.create(model="audio/no-such-voice", voice="alloy", input="x")


async def test_transcription_upload_of_text_is_415(client: Client) -> None:
    """A multipart upload of a text file answers 415 in OpenAI's error shape."""
    form = FormData()
    form.add_field(
        "file", b"hello, I am a text file", filename="notes.txt", content_type="text/plain"
    )
    form.add_field("model", "whisper-1")
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.status == 415, await response.text()
    error = (await response.json())["error"]
    assert "not an audio file" in error["message"] and error["param"] == "file"


async def test_lollms_generate_tts_stt_audio2audio(client: Client) -> None:
    """/api/v1/generate speaks, transcribes, revoices and converts."""
    status, body = await generate(
        client, "tts", [{"type": "text", "role": "user_prompt", "data": HELLO}], model_name=VOICE
    )
    assert status == 200, body
    (audio,) = [o for o in body["output"] if o["type"] == "audio"]
    assert audio["mime_type"] == "audio/wav" and audio["metadata"]["voice"] == VOICE
    wav = base64.b64decode(audio["data"])
    status, body = await generate(client, "stt", [audio_item(wav)], model_name=WHISPER)
    assert status == 200, body
    (text,) = [o for o in body["output"] if o["type"] == "text"]
    assert words(text["data"]) == ["hello", "world"]
    assert text["metadata"]["language"] == "en" and text["metadata"]["words"]
    status, body = await generate(
        client,
        "audio2audio",
        [audio_item(wav)],
        model_name=VOICE,
        parameters={"response_format": "mp3"},
    )
    assert status == 200, body
    (revoiced,) = [o for o in body["output"] if o["type"] == "audio"]
    assert revoiced["mime_type"] == "audio/mpeg"
    assert words(revoiced["metadata"]["transcript"]) == ["hello", "world"]
    assert sniff_audio(base64.b64decode(revoiced["data"])) == "mp3"
    status, body = await generate(
        client,
        "audio2audio",
        [audio_item(wav)],
        parameters={"mode": "convert", "sample_rate": 16000},
    )
    assert status == 200, body
    converted = base64.b64decode(body["output"][0]["data"])
    assert wav_info(converted)[0] == 16000


async def test_lollms_generate_rejects_non_audio(client: Client) -> None:
    """A PNG sent as audio is a 415 naming the instance; no audio at all is a 400."""
    status, body = await generate(client, "stt", [audio_item(PNG, "image/png")])
    assert status == 415, body
    assert body["error"]["type"] == "unsupported_media_type" and body["error"]["binding"] == "audio"
    status, body = await generate(client, "stt", [{"type": "text", "data": "no audio here"}])
    assert status == 400, body


async def test_plugin_startup_gives_the_data_dir(tmp_path: Path, packaged: None) -> None:
    """Installed as a plugin, an instance looks for voices in <data dir>/models/tts."""
    data = tmp_path / "data"
    instance = InstanceConfig(name="speech", type="audio", settings={"packaged_models": False})
    config = Config(data_dir=data, bindings={"speech": instance}, defaults={"tts": "speech"})
    prepare_data_dir(config)
    link_voice(data / "models" / "tts", "en_US-test-medium")
    plugins = load_plugins()
    assert "audio" in plugins.binding_classes
    async with TestClient(TestServer(create_app(config, plugins))) as client:
        response = await client.get("/api/v1/list_available_models/speech")
        assert response.status == 200, await response.text()
        names = [m["name"] for m in (await response.json())["models"]]
        assert "en_US-test-medium" in names and VOICE not in names
        response = await client.post("/v1/audio/speech", json={"input": HELLO, "voice": "alloy"})
        assert response.status == 200, await response.text()
        assert (await response.read())[:4] == b"RIFF"
