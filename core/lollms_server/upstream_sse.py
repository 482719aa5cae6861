"""Server-sent events as an upstream sends them: the `data` of each event, size-bounded, and
its JSON decoded."""

from __future__ import annotations

import json
from typing import Any

from .errors import BackendError

MAX_EVENT_BYTES = 16 * 1024 * 1024
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
