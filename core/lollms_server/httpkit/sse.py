"""Server-sent events: open a stream, send JSON events, notice a client that went away."""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any

from aiohttp import web

# one encoder: json.dumps builds a new one per call when given separators (once per chunk)
COMPACT = json.JSONEncoder(separators=(",", ":"))


def _compact_encoder() -> Callable[[Any], str]:
    """`COMPACT.encode`, with the C encoder built once: `encode` builds one (and a closure)
    per call. Events are dicts of our own making, never circular: no circularity markers (a
    circular value would raise RecursionError, not ValueError)."""
    make = getattr(json_encoder, "c_make_encoder", None)  # not in typeshed: _json's
    if make is None:  # no C accelerator: the pure Python encoder
        return COMPACT.encode
    # markers, default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan
    encode = make(None, COMPACT.default, json_encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, True)  # fmt: skip

    def compact(value: Any) -> str:
        if isinstance(value, str):  # a bare string: encode's own path
            return COMPACT.encode(value)
        return "".join(encode(value, 0))

    return compact


to_json = _compact_encoder()


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
