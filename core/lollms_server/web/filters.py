"""Jinja filters that format what bindings and the host report (sizes, counts, durations).

Values a binding reports are arbitrary JSON-like data (a size may come as a string, a count as
a float, a detail as a list, None, NaN or HTML), so every filter takes any value: what it cannot
format as a number it shows as text (escaped by the template's autoescape), never raising.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from collections.abc import Callable
from typing import Any

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
COUNT_UNITS = ("", "K", "M", "B", "T")
ELLIPSIS = "…"


def as_number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str:
    """Any value as display text: None is empty, containers are compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict | list | tuple):
        return _json(value, indent=None)
    return str(value)


def human_bytes(value: Any) -> str:
    """1536 -> '1.5 KiB'; None -> ''; not a number -> the value as text."""
    size = as_number(value)
    if size is None:
        return as_text(value)
    for unit in BYTE_UNITS:
        if abs(size) < 1024 or unit == BYTE_UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""  # pragma: no cover - the loop always returns


def human_count(value: Any) -> str:
    """135_000_000 -> '135M' (parameter counts); None -> ''; not a number -> the value as text."""
    number = as_number(value)
    if number is None:
        return as_text(value)
    for unit in COUNT_UNITS:
        if abs(number) < 1000 or unit == COUNT_UNITS[-1]:
            text = f"{number:.0f}" if number.is_integer() else f"{number:.1f}"
            return text + unit
        number /= 1000
    return ""  # pragma: no cover


def human_duration(seconds: Any) -> str:
    """3725 -> '1h 02m 05s'; None -> '0s'; not a number -> the value as text."""
    number = as_number(seconds if seconds is not None else 0)
    if number is None:
        return as_text(seconds)
    total = int(number)
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def timestamp(value: Any) -> str:
    """Seconds since the epoch -> 'YYYY-MM-DD HH:MM:SS' (UTC); not a time -> the value as text."""
    number = as_number(value)
    if number is None:
        return as_text(value)
    try:
        moment = datetime.datetime.fromtimestamp(number, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return as_text(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def fixed(value: Any, digits: int = 1) -> str:
    """12.345 -> '12.3' (with `digits` decimals); not a number -> the value as text."""
    number = as_number(value)
    return as_text(value) if number is None else f"{number:.{digits}f}"


def clip(value: Any, length: int = 300) -> str:
    """Any value as text, cut to `length` characters with an ellipsis (a type-safe truncate)."""
    text = as_text(value)
    return text if len(text) <= length else text[: max(length - 1, 0)].rstrip() + ELLIPSIS


def data_url(data: Any, mime_type: Any) -> str:
    """A `data:` URL for inline media (the CSP allows data: images and audio)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes | bytearray | memoryview):
        return ""
    return f"data:{as_text(mime_type)};base64,{base64.b64encode(data).decode('ascii')}"


def pretty_json(value: Any) -> str:
    """Indented JSON for detail views (any value; what JSON cannot hold is shown as text)."""
    return _json(value, indent=2)


def _json(value: Any, indent: int | None) -> str:
    try:
        return json.dumps(value, indent=indent, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # keys of mixed types cannot be sorted; cycles
        try:
            return json.dumps(value, indent=indent, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            return repr(value)


def extension(mime_type: Any) -> str:
    """'image/png' -> 'png', 'audio/wav' -> 'wav' (for download names); else 'bin'."""
    if not isinstance(mime_type, str):
        return "bin"
    sub = mime_type.split("/", 1)[-1].split(";", 1)[0].strip().lower()
    sub = {"mpeg": "mp3", "x-wav": "wav", "wave": "wav", "jpeg": "jpg"}.get(sub, sub)
    return sub if sub.replace("-", "").replace("+", "").replace(".", "").isalnum() else "bin"


FILTERS: dict[str, Callable[..., str]] = {
    "bytes": human_bytes,
    "count": human_count,
    "duration": human_duration,
    "timestamp": timestamp,
    "fixed": fixed,
    "clip": clip,
    "data_url": data_url,
    "pretty_json": pretty_json,
    "extension": extension,
}
