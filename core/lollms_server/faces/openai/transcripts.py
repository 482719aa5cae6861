"""OpenAI's transcription shapes from a binding's text output: duration, segments, subtitles."""

from __future__ import annotations

import io
import wave
from typing import Any

from ...bindings import Output


def duration(output: Output, audio: bytes) -> float:
    """Seconds of audio: from the binding, else from a WAV header, else 0."""
    given = output.metadata.get("duration")
    if isinstance(given, (int, float)):
        return float(given)
    try:
        with wave.open(io.BytesIO(audio)) as reader:
            return float(round(reader.getnframes() / reader.getframerate(), 3))
    except (wave.Error, EOFError, ZeroDivisionError):
        return 0.0


def segments(output: Output, text: str, duration: float, temperature: float) -> list[Any]:
    """The binding's segments (none when it heard nothing), else one segment spanning the
    audio when there is text; missing scores are 0."""
    raw = output.metadata.get("segments")
    if raw is None:  # a binding that reports no segments at all
        raw = [{"start": 0.0, "end": duration, "text": text}] if text.strip() else []
    segments = []
    for index, segment in enumerate(raw):
        segments.append(
            {
                "id": index,
                "seek": 0,
                "start": float(segment.get("start", 0.0)),
                "end": float(segment.get("end", duration)),
                "text": segment.get("text", ""),
                "tokens": list(segment.get("tokens", [])),
                "temperature": temperature,
                "avg_logprob": segment.get("avg_logprob", 0.0),
                "compression_ratio": segment.get("compression_ratio", 0.0),
                "no_speech_prob": segment.get("no_speech_prob", 0.0),
            }
        )
    return segments


def subtitles(segments: list[Any], *, vtt: bool) -> str:
    """SubRip or WebVTT text of the segments."""
    lines = ["WEBVTT", ""] if vtt else []
    for number, segment in enumerate(segments, start=1):
        if not vtt:
            lines.append(str(number))
        start, end = (stamp(segment[key], vtt) for key in ("start", "end"))
        lines += [f"{start} --> {end}", segment["text"].strip(), ""]
    return "\n".join(lines)


def stamp(seconds: float, vtt: bool) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{'.' if vtt else ','}{millis:03d}"
