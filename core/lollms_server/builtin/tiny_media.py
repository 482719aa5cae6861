"""Small deterministic PNG, animated PNG and WAV encoders (stdlib only) for the echo binding."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from collections.abc import Sequence

Pixel = tuple[int, int, int]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _scanlines(width: int, height: int, color_at: Sequence[Sequence[Pixel]]) -> bytes:
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows.extend(color_at[y][x])
    return zlib.compress(bytes(rows), 9)


def _header(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )


def gradient(width: int, height: int, seed: int) -> list[list[Pixel]]:
    """A deterministic colour gradient whose hue depends on `seed`."""
    r0, g0, b0 = seed & 0xFF, (seed >> 8) & 0xFF, (seed >> 16) & 0xFF
    return [
        [
            (
                (r0 + 255 * x // max(1, width - 1)) & 0xFF,
                (g0 + 255 * y // max(1, height - 1)) & 0xFF,
                b0,
            )
            for x in range(width)
        ]
        for y in range(height)
    ]


def png(pixels: Sequence[Sequence[Pixel]]) -> bytes:
    """Encode rows of RGB pixels as a PNG file."""
    height, width = len(pixels), len(pixels[0])
    return (
        _header(width, height)
        + _chunk(b"IDAT", _scanlines(width, height, pixels))
        + _chunk(b"IEND", b"")
    )


def apng(frames: Sequence[Sequence[Sequence[Pixel]]], delay_ms: int = 100) -> bytes:
    """Encode equally sized RGB frames as an animated PNG (looping forever)."""
    height, width = len(frames[0]), len(frames[0][0])
    out = bytearray(_header(width, height))
    out += _chunk(b"acTL", struct.pack(">II", len(frames), 0))
    sequence = 0
    for index, frame in enumerate(frames):
        out += _chunk(
            b"fcTL",
            struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, delay_ms, 1000, 0, 0),
        )
        sequence += 1
        data = _scanlines(width, height, frame)
        if index == 0:
            out += _chunk(b"IDAT", data)
        else:
            out += _chunk(b"fdAT", struct.pack(">I", sequence) + data)
            sequence += 1
    out += _chunk(b"IEND", b"")
    return bytes(out)


def tone_wav(frequencies: Sequence[float], seconds_each: float, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV playing each frequency in turn."""
    samples = bytearray()
    per_note = max(1, int(rate * seconds_each))
    for frequency in frequencies:
        for i in range(per_note):
            value = int(8000 * math.sin(2 * math.pi * frequency * i / rate))
            samples += struct.pack("<h", value)
    return pcm_wav(bytes(samples), rate)


def pcm_wav(frames: bytes, rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    """Wrap raw PCM frames in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(sample_width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int, int, int]:
    """(frames, rate, channels, sample width) of a WAV file; raise ValueError if it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            return (
                reader.readframes(reader.getnframes()),
                reader.getframerate(),
                reader.getnchannels(),
                reader.getsampwidth(),
            )
    except (wave.Error, EOFError, struct.error) as exc:
        raise ValueError(f"not a WAV file: {exc}") from exc
