"""Server-sent events: open a stream, send JSON events, notice a client that went away."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from json import encoder as json_encoder
from typing import Any

from aiohttp import web

from ..json_encoding import one_shot
from ..keys import CONFIG
from .burst import BurstResponse

# one encoder: json.dumps builds a new one per call when given separators (once per chunk)
COMPACT = json.JSONEncoder(separators=(",", ":"))
to_json = one_shot(COMPACT)  # COMPACT.encode, its C encoder built once
encode_string = json_encoder.encode_basestring_ascii  # how COMPACT (ensure_ascii) writes a str


async def open_sse(
    request: web.Request, headers: dict[str, str] | None = None, *, headers_now: bool = False
) -> BurstResponse:
    """Start a `text/event-stream` response; its headers go with the first event unless
    `headers_now` (a stream that may wait before its first event). A client that takes nothing
    for `request_timeout_s` is dropped."""
    response = BurstResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        },
        headers_now=headers_now,
        stall_s=request.app[CONFIG].request_timeout_s,
    )
    await response.prepare(request)
    return response


def send_event(response: BurstResponse, data: Any) -> Awaitable[None]:
    """Write one `data:` event (JSON, or a literal string such as `[DONE]`); ClientGone once
    the client has left. Returns the write's own awaitable: no frame of this function stays."""
    return response.send(_event(data))


def hold_event(response: BurstResponse, data: Any) -> None:
    """Keep one `data:` event for the next write (an opening event the first text follows)."""
    response.hold(_event(data))


def _event(data: Any) -> bytes:
    payload = data if isinstance(data, str) else to_json(data)
    return f"data: {payload}\n\n".encode()


SLOT = "\x00lollms-slot\x00"  # stands for the text in an event template


class EventTemplate:
    """The `data:` event of a JSON object in which one string varies (a stream's text delta):
    the bytes `send_event` writes for it, with the text dropped into a template made once from
    the object itself, instead of the object rebuilt and encoded per chunk."""

    def __init__(self, data: Any) -> None:
        """`data` holds `SLOT` as the one string that varies."""
        head, slot, tail = _event(data).partition(encode_string(SLOT).encode())
        if not slot or slot in tail:
            raise ValueError("the template's data must hold SLOT exactly once")
        self._head, self._tail = head, tail

    def event(self, text: str) -> bytes:
        """The event of the object with `text` in place of SLOT."""
        return self._head + encode_string(text).encode() + self._tail
