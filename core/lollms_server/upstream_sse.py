"""What an upstream sends: server-sent events (the `data` of each event, size-bounded, and its
JSON decoded) and error bodies (bounded, with their message)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from .errors import BackendError

MAX_EVENT_BYTES = 16 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024
_RAW_DECODE = json.JSONDecoder().raw_decode
_SLOW_START = " \t\n\r\ufeff"  # whitespace, or a BOM (which loads refuses by name)


def json_of(text: str) -> Any:
    """`json.loads(text)`, the same value and errors; a text that starts and ends with its
    value (an event's `data`, an answer's body) skips `loads`' two whitespace scans."""
    if text and text[0] not in _SLOW_START:
        value, end = _RAW_DECODE(text)
        if end == len(text):
            return value
    return json.loads(text)  # whitespace around the value, or extra data: loads' own answer


class SseParser:
    """Splits the bytes of an event stream, fed as they arrive, into each event's `data`
    (multi-line data joined by newlines); a plain object, so the reader of the HTTP body loops
    over its events without one more generator per chunk. Feed two newlines at the end of the
    body to get a last event that was not closed by a blank line."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._buffer = b""
        self._data: list[bytes] = []
        self._size = 0

    def feed(self, piece: bytes) -> list[bytes]:
        """The events that `piece` completes."""
        events: list[bytes] = []
        buffer = self._buffer + piece if self._buffer else piece
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                self._data, self._size = [], 0
            elif line.startswith(b"data:"):  # inline: once per event
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
                self._size += len(value)
        self._buffer = buffer[start:]
        if self._size + len(self._buffer) > MAX_EVENT_BYTES:
            raise BackendError(f"{self.label} sent an event over {MAX_EVENT_BYTES} bytes")
        return events


async def error_payload(response: aiohttp.ClientResponse) -> Any:
    """The body of an error answer (its first MAX_ERROR_BODY bytes): JSON, else its text."""
    try:
        raw = await response.content.read(MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        return f"HTTP {response.status}"
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip() or f"HTTP {response.status}"


def message_of(payload: Any) -> str:
    """The human message of an error body in the OpenAI, FastAPI or plain-text shapes."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(inner.get(key), str):
                    return str(inner[key])[:500]
            if isinstance(payload.get("detail"), str):
                return str(payload["detail"])[:500]
            return json.dumps(inner)[:500]
        if isinstance(inner, str):
            return inner[:500]
    return str(payload)[:500]


def names_a_field(payload: Any) -> bool:
    """True when an error body names the request field it is about (`error.param`, as the
    lollms and OpenAI shapes do): a 404 about what was asked for, not a route the server lacks."""
    inner = payload.get("error") if isinstance(payload, dict) else None
    return isinstance(inner, dict) and isinstance(inner.get("param"), str) and bool(inner["param"])


def event_status(event: Mapping[str, Any]) -> int:
    """The HTTP status an SSE `error` event names (its `error.code`), else 502."""
    error = event.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else 502
