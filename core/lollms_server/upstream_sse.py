"""Server-sent events as an upstream sends them: the `data` of each event, size-bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from .errors import BackendError

MAX_EVENT_BYTES = 16 * 1024 * 1024


async def sse_data(content: aiohttp.StreamReader, label: str) -> AsyncIterator[str]:
    """The `data` of each server-sent event (multi-line data joined by newlines)."""
    buffer = b""
    data: list[str] = []
    size = 0
    async for piece in content.iter_any():
        buffer += piece
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end].rstrip(b"\r"), buffer[end + 1 :]
            if not line:
                if data:
                    yield "\n".join(data)
                data, size = [], 0
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append((value[1:] if value.startswith(b" ") else value).decode())
                size += len(value)
        if size + len(buffer) > MAX_EVENT_BYTES:
            raise BackendError(f"{label} sent an event over {MAX_EVENT_BYTES} bytes")
    if buffer.startswith(b"data:"):
        value = buffer[5:].rstrip(b"\r")
        data.append((value[1:] if value.startswith(b" ") else value).decode())
    if data:
        yield "\n".join(data)
