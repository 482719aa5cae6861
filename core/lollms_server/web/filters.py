"""Jinja filters that format what bindings and the host report (sizes, counts, durations)."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable
from typing import Any

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
COUNT_UNITS = ("", "K", "M", "B", "T")


def human_bytes(value: Any) -> str:
    """1536 -> '1.5 KiB'; None -> ''."""
    if value is None:
        return ""
    size = float(value)
    for unit in BYTE_UNITS:
        if abs(size) < 1024 or unit == BYTE_UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # pragma: no cover - the loop always returns


def human_count(value: Any) -> str:
    """135_000_000 -> '135M' (parameter counts); None -> ''."""
    if value is None:
        return ""
    number = float(value)
    for unit in COUNT_UNITS:
        if abs(number) < 1000 or unit == COUNT_UNITS[-1]:
            text = f"{number:.0f}" if number == int(number) else f"{number:.1f}"
            return text + unit
        number /= 1000
    return ""  # pragma: no cover


def human_duration(seconds: Any) -> str:
    """3725 -> '1h 02m 05s'."""
    total = int(seconds or 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def timestamp(value: Any) -> str:
    """Seconds since the epoch -> 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    if value is None:
        return ""
    moment = datetime.datetime.fromtimestamp(float(value), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def data_url(data: bytes, mime_type: str) -> str:
    """A `data:` URL for inline media (the CSP allows data: images and audio)."""
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def pretty_json(value: Any) -> str:
    """Indented JSON for detail views."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def extension(mime_type: str) -> str:
    """'image/png' -> 'png', 'audio/wav' -> 'wav' (for download names)."""
    sub = mime_type.split("/", 1)[-1].split(";", 1)[0].strip().lower()
    return {"mpeg": "mp3", "x-wav": "wav", "wave": "wav", "jpeg": "jpg"}.get(sub, sub or "bin")


FILTERS: dict[str, Callable[..., str]] = {
    "bytes": human_bytes,
    "count": human_count,
    "duration": human_duration,
    "timestamp": timestamp,
    "data_url": data_url,
    "pretty_json": pretty_json,
    "extension": extension,
}
