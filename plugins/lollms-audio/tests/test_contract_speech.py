"""Real speech through the binding: Piper and espeak-ng speak, faster-whisper listens."""

from __future__ import annotations

import asyncio
import gc
import io
import shutil
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import numpy
import pytest
import pytest_asyncio
from lollms_audio import AudioBinding
from lollms_audio.formats import Pcm, sniff_audio, wav_bytes

from lollms_server.bindings import ChatMessage, GenerationRequest, InputItem, Output
from lollms_server.errors import InvalidRequest, ModelNotFound, UnsupportedMediaType
from lollms_server.testing import backend_unavailable, started_binding

from .conftest import FOX, HELLO, SENTENCE, VOICE, WHISPER, silence, wav_info, words

MAGIC = {"mp3": "mp3", "ogg": "ogg", "opus": "ogg", "flac": "flac", "aac": "aac"}
MIME = {
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}


@pytest_asyncio.fixture
async def binding(
    model_folders: dict[str, list[str]], packaged: None
) -> AsyncIterator[AudioBinding]:
    """A started instance with the packaged models (and espeak-ng when on PATH)."""
    async with started_binding(AudioBinding, "audio", model_folders) as started:
        assert isinstance(started, AudioBinding)
        yield started


def tts(text: str, model: str = VOICE, **parameters: Any) -> GenerationRequest:
    """A tts request."""
    return GenerationRequest("tts", model, (ChatMessage("user", text),), parameters=parameters)


def stt(audio: bytes, model: str = WHISPER, **parameters: Any) -> GenerationRequest:
    """An stt request."""
    item = InputItem("audio", role="input_audio", data=audio)
    return GenerationRequest("stt", model, inputs=(item,), parameters=parameters)


async def speak(binding: AudioBinding, text: str, **parameters: Any) -> Output:
    """The audio output of a tts request."""
    result = await binding.generate(tts(text, **parameters))
    (output,) = result.outputs
    assert output.type == "audio"
    return output


async def hear(binding: AudioBinding, audio: bytes, **parameters: Any) -> Output:
    """The text output of an stt request."""
    result = await binding.generate(stt(audio, **parameters))
    (output,) = result.outputs
    assert output.type == "text"
    return output


def webm(pcm: Pcm) -> bytes:
    """Opus in WebM, as a browser's MediaRecorder uploads it."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        samples = numpy.frombuffer(pcm.data, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = pcm.rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("text", [HELLO, SENTENCE, FOX])
async def test_piper_speech_is_heard_back(binding: AudioBinding, text: str) -> None:
    """Piper's WAV (22.05 kHz mono) transcribes back to every word that was spoken."""
    spoken = await speak(binding, text)
    assert spoken.mime_type == "audio/wav"
    rate, channels, seconds = wav_info(spoken.data)
    assert (rate, channels) == (22050, 1)
    assert 0.3 < seconds < 1.0 + len(text) * 0.15
    assert spoken.metadata["voice"] == VOICE and spoken.metadata["engine"] == "piper"
    heard = await hear(binding, spoken.data)
    assert set(words(text)) <= set(words(heard.text)), heard.text
    assert heard.metadata["model"] == WHISPER


async def test_word_timestamps(binding: AudioBinding, say: Callable[[str], bytes]) -> None:
    """Words come with ordered times inside the audio, matching the transcript."""
    audio = say(SENTENCE)
    heard = await hear(binding, audio)
    found = heard.metadata["words"]
    assert [w for item in found for w in words(item["word"])] == words(heard.text)
    starts = [item["start"] for item in found]
    assert starts == sorted(starts)
    duration = wav_info(audio)[2]
    assert all(0 <= item["start"] <= item["end"] <= duration + 0.05 for item in found), found
    assert found[-1]["end"] > duration / 2
    segments = heard.metadata["segments"]
    assert segments and segments[0]["start"] >= 0 and segments[-1]["end"] <= duration + 0.05
    plain = await hear(binding, audio, word_timestamps=False)
    assert "words" not in plain.metadata
    assert set(words(SENTENCE)) <= set(words(plain.text))


async def test_language_is_detected(binding: AudioBinding, say: Callable[[str], bytes]) -> None:
    """Without a language the model reports English; other languages on tiny.en are a 400."""
    heard = await hear(binding, say(HELLO))
    assert heard.metadata["language"] == "en"
    assert heard.metadata["language_probability"] >= 0.5
    assert words(HELLO) == words((await hear(binding, say(HELLO), language="EN")).text)
    with pytest.raises(InvalidRequest, match="English-only") as caught:
        await hear(binding, say(HELLO), language="fr")
    assert caught.value.param == "language"
    with pytest.raises(InvalidRequest, match="ISO-639-1"):
        await hear(binding, say(HELLO), language="english!")


async def test_vad_filter_skips_silence(
    binding: AudioBinding, say_pcm: Callable[[str], Pcm]
) -> None:
    """With vad_filter, two seconds of quiet on each side are cut before decoding."""
    speech = say_pcm(HELLO)
    padded = Pcm(silence(2.0, speech.rate) + speech.data + silence(2.0, speech.rate), speech.rate)
    audio = wav_bytes(padded)
    with_vad = await hear(binding, audio, vad_filter=True)
    without = await hear(binding, audio, vad_filter=False)
    assert with_vad.metadata["duration"] == pytest.approx(padded.duration, abs=0.05)
    assert with_vad.metadata["duration_after_vad"] < padded.duration - 2.5
    assert without.metadata["duration_after_vad"] == without.metadata["duration"]
    assert words(with_vad.text) == words(HELLO), with_vad.text
    assert with_vad.metadata["words"][0]["start"] >= 1.5  # times stay those of the full audio


@pytest.mark.parametrize("fmt", sorted(MAGIC))
async def test_output_formats_round_trip(binding: AudioBinding, fmt: str) -> None:
    """mp3, ogg/opus, flac and aac are real files of their type that transcribe back."""
    spoken = await speak(binding, FOX, response_format=fmt)
    assert spoken.mime_type == MIME[fmt]
    assert sniff_audio(spoken.data) == MAGIC[fmt], spoken.data[:8]
    assert spoken.metadata["format"] == fmt
    heard = await hear(binding, spoken.data)
    assert set(words(FOX)) <= set(words(heard.text)), heard.text


async def test_webm_and_resampled_uploads(
    binding: AudioBinding, say_pcm: Callable[[str], Pcm]
) -> None:
    """A WebM/Opus upload (browser recording) and an 8 kHz stereo WAV are both understood."""
    speech = say_pcm(HELLO)
    heard = await hear(binding, webm(speech))
    assert words(heard.text) == words(HELLO), heard.text
    converted = await binding.generate(
        GenerationRequest(
            "audio2audio",
            VOICE,
            inputs=(InputItem("audio", data=wav_bytes(speech)),),
            parameters={"mode": "convert", "sample_rate": 8000, "channels": 2},
        )
    )
    stereo = converted.outputs[0].data
    assert wav_info(stereo)[:2] == (8000, 2)
    assert words((await hear(binding, stereo)).text) == words(HELLO)


async def test_speed(binding: AudioBinding) -> None:
    """speed 2 speaks in under half the time of speed 0.5; out of range is a 400."""
    fast = await speak(binding, FOX, speed=2.0)
    slow = await speak(binding, FOX, speed=0.5)
    assert fast.metadata["duration"] < slow.metadata["duration"] / 2
    with pytest.raises(InvalidRequest) as caught:
        await speak(binding, FOX, speed=10)
    assert caught.value.param == "speed"


async def test_espeak_ng_engine(binding: AudioBinding, request: pytest.FixtureRequest) -> None:
    """espeak-ng speaks (its voices chosen by `voice`), and faster-whisper understands it."""
    if shutil.which("espeak-ng") is None:
        backend_unavailable(request, "espeak-ng is not on PATH (apt-get install espeak-ng)")
    spoken = await speak(binding, HELLO, model="espeak-ng")
    assert spoken.metadata["engine"] == "espeak-ng" and spoken.metadata["espeak_voice"] == "en-us"
    assert words((await hear(binding, spoken.data)).text) == words(HELLO)
    british = await speak(binding, HELLO, model="espeak-ng", voice="en-gb")
    assert british.metadata["espeak_voice"] == "en-gb" and british.data != spoken.data
    # the README's own example: `fr` is French's voice file, as `espeak-ng -v fr` takes it
    # (its language column says fr-fr); before, it was a 400 "espeak-ng has no voice 'fr'"
    french = await speak(binding, "bonjour tout le monde", model="espeak-ng", voice="fr")
    plain = await speak(binding, "bonjour tout le monde", model="espeak-ng")
    assert french.metadata["espeak_voice"] == "fr" and french.data != plain.data
    assert (await speak(binding, HELLO, model="espeak-ng", voice="fr+f3")).data
    fast = await speak(binding, FOX, model="espeak-ng", speed=2.0)
    slow = await speak(binding, FOX, model="espeak-ng", speed=0.5)
    assert fast.metadata["duration"] < slow.metadata["duration"] / 2
    with pytest.raises(InvalidRequest) as caught:
        await speak(binding, HELLO, model="espeak-ng", voice="no-such-voice")
    assert caught.value.param == "voice"
    with pytest.raises(InvalidRequest):
        await speak(binding, HELLO, model="espeak-ng", voice="../../etc/passwd")


async def test_non_audio_is_415_and_broken_audio_400(binding: AudioBinding) -> None:
    """A PNG or text upload is 415; a WAV header over garbage is a 400, never a 500."""
    for junk in (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"just some text, not audio"):
        with pytest.raises(UnsupportedMediaType) as caught:
            await hear(binding, junk)
        assert caught.value.status == 415
    broken = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 64
    with pytest.raises(InvalidRequest) as bad:
        await hear(binding, broken)
    assert bad.value.status == 400
    with pytest.raises(InvalidRequest):
        await binding.generate(GenerationRequest("stt", WHISPER))


async def test_audio2audio_revoice(binding: AudioBinding, say: Callable[[str], bytes]) -> None:
    """revoice: transcribe, then speak again with the named voice, in the asked format."""
    source = say(FOX)
    request = GenerationRequest(
        "audio2audio",
        VOICE,
        inputs=(InputItem("audio", data=source),),
        parameters={"response_format": "flac", "speed": 1.5},
    )
    (output,) = (await binding.generate(request)).outputs
    assert output.mime_type == "audio/flac" and sniff_audio(output.data) == "flac"
    assert output.metadata["mode"] == "revoice" and output.metadata["voice"] == VOICE
    assert set(words(FOX)) <= set(words(output.metadata["transcript"]))
    assert output.metadata["duration"] < wav_info(source)[2]  # spoken faster
    assert set(words(FOX)) <= set(words((await hear(binding, output.data)).text))
    with pytest.raises(InvalidRequest):
        await binding.generate(
            GenerationRequest(
                "audio2audio", VOICE, inputs=request.inputs, parameters={"mode": "karaoke"}
            )
        )


async def test_unload_frees_the_models(binding: AudioBinding) -> None:
    """After unload, nothing holds the ONNX session or the CTranslate2 model."""
    spoken = await speak(binding, HELLO)
    await hear(binding, spoken.data)
    models = {m.name: m for m in await binding.list_models()}
    assert models[VOICE].loaded and models[WHISPER].loaded
    voice_ref = weakref.ref(binding._engines[VOICE].voice)  # type: ignore[union-attr]
    whisper_ref = weakref.ref(binding._engines[WHISPER].model)  # type: ignore[union-attr]
    await binding.unload(VOICE)
    await binding.unload(WHISPER)
    gc.collect()
    assert voice_ref() is None, "the Piper voice is still referenced"
    assert whisper_ref() is None, "the whisper model is still referenced"
    models = {m.name: m for m in await binding.list_models()}
    assert not models[VOICE].loaded and not models[WHISPER].loaded
    assert words((await hear(binding, spoken.data)).text) == words(HELLO)  # loads again


async def test_work_runs_off_the_event_loop(
    binding: AudioBinding, say: Callable[[str], bytes]
) -> None:
    """While a transcription and a synthesis run, the event loop keeps ticking."""
    await binding.load(WHISPER)
    await binding.load(VOICE)
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    long_text = " ".join([SENTENCE, FOX] * 3)  # seconds of work even on a fast, idle machine
    heard, spoken = await asyncio.gather(
        hear(binding, say(f"{SENTENCE} {FOX}")), speak(binding, long_text)
    )
    took = time.monotonic() - started
    done.set()
    await ticker
    assert set(words(SENTENCE)) <= set(words(heard.text))
    assert wav_info(spoken.data)[2] > 10
    assert took > 0.6, "too quick to show anything"
    # Work on the loop would freeze it for each whole call: a handful of ticks, one gap about
    # as long as the work. On threads it ticks all along (a busy machine adds some jitter).
    assert len(gaps) >= took / 0.1, f"{len(gaps)} ticks in {took:.2f}s: the loop was blocked"
    assert max(gaps) < took / 2, f"the loop stalled {max(gaps):.3f}s during {took:.2f}s of work"


async def test_model_names(binding: AudioBinding) -> None:
    """OpenAI ids mean the defaults; unknown names are 404s; a path is never a model name."""
    assert (await speak(binding, HELLO, model="tts-1", voice="alloy")).metadata["voice"] == VOICE
    heard = await hear(binding, (await speak(binding, HELLO)).data, model="whisper-1")
    assert heard.metadata["model"] == WHISPER
    for name in ("no-such-voice", "../../joe-us", "/etc/passwd"):
        with pytest.raises(ModelNotFound):
            await speak(binding, HELLO, model=name)
        with pytest.raises(ModelNotFound):
            await binding.load(name)
    with pytest.raises(ModelNotFound):
        await speak(binding, HELLO, voice="no-such-speaker")
    with pytest.raises(InvalidRequest):
        await speak(binding, "   ")
    with pytest.raises(InvalidRequest):
        await speak(binding, HELLO, response_format="wma")
