"""Server-sent events as an upstream sends them: the `data` of each event, size-bounded."""

from __future__ import annotations

from .errors import BackendError

MAX_EVENT_BYTES = 16 * 1024 * 1024


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
