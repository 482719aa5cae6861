"""Audio containers: magic bytes, WAV by hand, PyAV encoding and decoding."""

from __future__ import annotations

import math
import struct

import pytest
from lollms_audio.formats import (
    OUTPUT_FORMATS,
    Pcm,
    check_format,
    decode,
    encode,
    require_audio,
    sniff_audio,
    wav_bytes,
)

from lollms_server.errors import InvalidRequest, UnsupportedMediaType


def tone(seconds: float = 0.5, rate: int = 22050, hz: float = 440.0, channels: int = 1) -> Pcm:
    """A sine tone."""
    count = int(seconds * rate)
    samples = [int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(count)]
    frames = [s for s in samples for _ in range(channels)]
    return Pcm(struct.pack(f"<{len(frames)}h", *frames), rate, channels)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"RIFF\0\0\0\0WAVEfmt ", "wav"),
        (b"fLaC\0\0\0\x22", "flac"),
        (b"OggS\0\x02", "ogg"),
        (b"\x1a\x45\xdf\xa3\x01", "webm"),
        (b"\0\0\0\x20ftypM4A ", "mp4"),
        (b"FORM\0\0\0\0AIFF", "aiff"),
        (b"ID3\x04\0", "mp3"),
        (b"\xff\xfb\x90\x00", "mp3"),
        (b"\xff\xf1\x50\x80", "aac"),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"%PDF-1.7", None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    """Containers are told apart by their first bytes."""
    assert sniff_audio(head + b"\0" * 16) == kind if head else sniff_audio(head) is None


def test_require_audio() -> None:
    """Non-audio is a 415 naming what to send; empty is a 400."""
    with pytest.raises(UnsupportedMediaType, match="WAV, MP3") as caught:
        require_audio(b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "image/png")
    assert caught.value.status == 415 and "image/png" in caught.value.message
    with pytest.raises(InvalidRequest):
        require_audio(b"")
    assert require_audio(wav_bytes(tone())) == "wav"


def test_check_format() -> None:
    """Formats are case-insensitive; unknown ones are a 400 listing the allowed."""
    assert check_format(None, "wav") == "wav"
    assert check_format("MP3", "wav") == "mp3"
    for bad in ("wma", 3, ""):
        if bad == "":
            assert check_format(bad, "flac") == "flac"
            continue
        with pytest.raises(InvalidRequest, match="opus"):
            check_format(bad, "wav")
    assert set(OUTPUT_FORMATS) == {"wav", "pcm", "mp3", "flac", "ogg", "opus", "aac"}


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg", "aac"])
def test_encode_then_decode(fmt: str) -> None:
    """Each format encodes to its container and decodes back to about the same length."""
    pcm = tone(0.5)
    data, mime = encode(pcm, fmt)
    assert mime.startswith("audio/")
    assert sniff_audio(data) == {"ogg": "ogg", "aac": "aac"}.get(fmt, fmt)
    back = decode(data, rate=16000, channels=1)
    assert back.rate == 16000 and back.channels == 1
    assert back.duration == pytest.approx(0.5, abs=0.08)


def test_flac_is_lossless_and_stereo_survives() -> None:
    """FLAC returns the very samples; a stereo WAV stays stereo unless remixed."""
    pcm = tone(0.2, channels=2)
    data, _ = encode(pcm, "flac")
    assert decode(data) == pcm
    mono = decode(wav_bytes(pcm), channels=1)
    assert mono.channels == 1 and len(mono.data) == len(pcm.data) // 2


def test_decode_garbage_behind_a_header_is_400() -> None:
    """Audio magic over garbage cannot be decoded: a 400, not a crash."""
    with pytest.raises(InvalidRequest, match="decoded"):
        decode(b"fLaC" + b"\x13" * 200)
