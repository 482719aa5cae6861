"""Server-sent events: open a stream, send JSON events, notice a client that went away."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..json_encoding import one_shot

# one encoder: json.dumps builds a new one per call when given separators (once per chunk)
COMPACT = json.JSONEncoder(separators=(",", ":"))
to_json = one_shot(COMPACT)  # COMPACT.encode, its C encoder built once


class ClientGone(Exception):
    """The client closed the connection while we were writing."""


async def open_sse(
    request: web.Request, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Start a `text/event-stream` response."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        }
    )
    await response.prepare(request)
    return response


async def send_event(response: web.StreamResponse, data: Any) -> None:
    """Write one `data:` event (JSON, or a literal string such as `[DONE]`)."""
    payload = data if isinstance(data, str) else to_json(data)
    try:
        await response.write(f"data: {payload}\n\n".encode())
    except (ConnectionResetError, ConnectionError, RuntimeError) as exc:
        raise ClientGone() from exc
