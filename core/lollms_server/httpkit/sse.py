"""Server-sent events: open a stream, send JSON events, notice a client that went away."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from ..json_encoding import one_shot
from .burst import BurstResponse

# one encoder: json.dumps builds a new one per call when given separators (once per chunk)
COMPACT = json.JSONEncoder(separators=(",", ":"))
to_json = one_shot(COMPACT)  # COMPACT.encode, its C encoder built once


async def open_sse(request: web.Request, headers: dict[str, str] | None = None) -> BurstResponse:
    """Start a `text/event-stream` response."""
    response = BurstResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        }
    )
    await response.prepare(request)
    return response


def send_event(response: BurstResponse, data: Any) -> Awaitable[None]:
    """Write one `data:` event (JSON, or a literal string such as `[DONE]`); ClientGone once
    the client has left. Returns the write's own awaitable: no frame of this function stays."""
    payload = data if isinstance(data, str) else to_json(data)
    return response.send(f"data: {payload}\n\n".encode())
