"""Audio containers: sniffing uploads by magic bytes, WAV by hand, the rest through PyAV.

PyAV (`av`) comes with faster-whisper and carries its own FFmpeg libraries (LAME, Opus, FLAC,
AAC), so encoding needs no `ffmpeg` binary. It is imported on first use, never at import time.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Any

from lollms_server.sdk import (
    InvalidRequest,
    MissingDependency,
    PayloadTooLarge,
    UnsupportedMediaType,
    sniff,
)

#: response_format -> (PyAV container, codec, fixed sample rate or None, mime type)
ENCODINGS: dict[str, tuple[str, str, int | None, str]] = {
    "mp3": ("mp3", "libmp3lame", None, "audio/mpeg"),
    "flac": ("flac", "flac", None, "audio/flac"),
    "ogg": ("ogg", "libopus", 48000, "audio/ogg"),
    "opus": ("ogg", "libopus", 48000, "audio/ogg"),
    "aac": ("adts", "aac", None, "audio/aac"),
}
OUTPUT_FORMATS: tuple[str, ...] = ("wav", "pcm", *ENCODINGS)
#: What uploads may be, by their first bytes (PyAV decodes them all).
INPUT_FORMATS = "WAV, MP3, OGG (Vorbis/Opus), FLAC, WebM/Matroska, MP4/M4A, AAC, AIFF"
PCM_RATE = 24000  # OpenAI's `pcm`: 24 kHz, 16-bit signed little-endian, mono
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass(frozen=True)
class Pcm:
    """Interleaved signed 16-bit little-endian samples."""

    data: bytes
    rate: int
    channels: int = 1

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        frames = len(self.data) // (2 * self.channels)
        return round(frames / self.rate, 3) if self.rate else 0.0


CONTAINERS = {
    "audio/wav": "wav",
    "audio/flac": "flac",
    "audio/ogg": "ogg",
    "video/webm": "webm",
    "video/mp4": "mp4",
    "audio/aiff": "aiff",
    "audio/mpeg": "mp3",
    "audio/aac": "aac",
}


def sniff_audio(data: bytes) -> str | None:
    """The container that the first bytes of `data` show, or None when it is no audio we read."""
    return CONTAINERS.get(sniff(data) or "")


def require_audio(data: bytes, mime_type: str | None = None) -> str:
    """The sniffed container of an upload; 415 when the bytes are not audio we can decode."""
    if not data:
        raise InvalidRequest("the audio input is empty", param="file")
    found = sniff_audio(data)
    if found is None:
        said = f" (sent as {mime_type})" if mime_type else ""
        raise UnsupportedMediaType(
            f"the upload{said} is not an audio file this binding reads; send {INPUT_FORMATS}",
            param="file",
        )
    return found


def wav_bytes(pcm: Pcm) -> bytes:
    """A 16-bit PCM WAV file of `pcm`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(pcm.channels)
        writer.setsampwidth(2)
        writer.setframerate(pcm.rate)
        writer.writeframes(pcm.data)
    return buffer.getvalue()


def check_format(name: object, default: str | None = None) -> str:
    """A valid `response_format` (lower case; default: `default`, else WAV), or a 400."""
    value = (default or "wav") if name in (None, "") else name
    if not isinstance(value, str) or value.lower() not in OUTPUT_FORMATS:
        raise InvalidRequest(
            f"response_format {value!r} is not available; use one of {', '.join(OUTPUT_FORMATS)}",
            param="response_format",
        )
    return value.lower()


def encode(pcm: Pcm, response_format: str) -> tuple[bytes, str]:
    """(file bytes, mime type) of `pcm` in `response_format` (`pcm` is sent as WAV of OpenAI's
    raw rate, 24 kHz mono: clients play the raw samples at that rate)."""
    if response_format == "pcm" and (pcm.rate, pcm.channels) != (PCM_RATE, 1):
        pcm = decode(wav_bytes(pcm), PCM_RATE, 1)
    if response_format in ("wav", "pcm"):
        return wav_bytes(pcm), "audio/wav"
    container, codec, fixed_rate, mime = ENCODINGS[response_format]
    rate = fixed_rate or pcm.rate
    if codec == "libmp3lame" and rate not in MP3_RATES:
        rate = min(MP3_RATES, key=lambda r: abs(r - rate))
    av, numpy = _av()
    layout = "mono" if pcm.channels == 1 else "stereo"
    samples = numpy.frombuffer(pcm.data, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
    frame.sample_rate = pcm.rate
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue(), mime


def decode(
    data: bytes, rate: int | None = None, channels: int | None = None, max_s: float | None = None
) -> Pcm:
    """Decode any audio file PyAV reads into 16-bit PCM (resampled/remixed when asked); a 413
    once more than `max_s` seconds come out (a few KB of FLAC can hold hours of silence)."""
    require_audio(data)
    av, numpy = _av()
    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.audio:
                raise UnsupportedMediaType("the upload has no audio track", param="file")
            stream = container.streams.audio[0]
            source_rate = int(stream.rate or stream.codec_context.sample_rate)
            source_channels = max(1, min(2, int(stream.codec_context.channels or 1)))
            out_rate = rate or source_rate
            out_channels = channels or source_channels
            layout = "mono" if out_channels == 1 else "stereo"
            resampler = av.AudioResampler(format="s16", layout=layout, rate=out_rate)
            parts: list[bytes] = []
            heard = 0.0
            for frame in container.decode(stream):
                heard += frame.samples / (frame.sample_rate or source_rate or 1)
                if max_s is not None and heard > max_s:
                    raise PayloadTooLarge(
                        f"the audio is longer than {max_s:g} s (setting max_audio_s)",
                        param="file",
                    )
                for converted in resampler.resample(frame):
                    parts.append(_packed(converted, numpy))
            for converted in resampler.resample(None):
                parts.append(_packed(converted, numpy))
    except av.error.FFmpegError as exc:
        raise InvalidRequest(f"the audio could not be decoded: {exc}", param="file") from exc
    return Pcm(b"".join(parts), out_rate, out_channels)


def _packed(frame: Any, numpy: Any) -> bytes:
    array = frame.to_ndarray()
    return bytes(numpy.ascontiguousarray(array).astype("<i2").tobytes())


def _av() -> tuple[Any, Any]:
    try:
        import av
        import numpy
    except ImportError as exc:
        raise MissingDependency(
            "encoding or decoding audio needs PyAV: pip install av (faster-whisper brings it)"
        ) from exc
    return av, numpy
