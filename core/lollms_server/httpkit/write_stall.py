"""A whole (non-streamed) answer its client does not read is dropped after `request_timeout_s`.

aiohttp hands a `web.Response` body to the transport, which keeps what the socket does not
take at once, and the handler's task waits for it to drain: a client that never reads keeps
the whole answer in memory for as long as it keeps the connection (20 such clients of a 21 MB
answer took a server from 150 MB to 1.3 GB). Streamed answers have their own watchdog
(`burst.BurstResponse`); for a whole answer bigger than the socket buffers usually take,
`watch_whole_answer` (in the app's `prepare_answer`) starts one timer that looks at the transport's
buffer every `request_timeout_s`: emptied, it stops; smaller than last time (the client reads,
however slowly), it looks again later; not smaller, it aborts the connection. A client that
reads nothing is so dropped between one and two `request_timeout_s` after the answer began.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..keys import CONFIG

#: Bodies up to this size are left alone: the kernel's socket buffers take them whole.
WATCHED_BYTES = 256 * 1024

log = logging.getLogger(__name__)


def watch_whole_answer(request: web.Request, response: web.StreamResponse) -> None:
    """Part of `prepare_answer`: a stall watchdog for a big `web.Response` body."""
    if not isinstance(response, web.Response) or (response.content_length or 0) <= WATCHED_BYTES:
        return
    transport = request.transport
    if transport is None:
        return
    WriteStall(transport, request.app[CONFIG].request_timeout_s, request.path).start()


class WriteStall:
    """Aborts `transport` when its write buffer did not shrink in `stall_s`."""

    def __init__(self, transport: asyncio.Transport, stall_s: float, path: str) -> None:
        self.transport = transport
        self.stall_s = stall_s
        self.path = path
        self.left: int | None = None  # bytes buffered at the last look

    def start(self) -> None:
        """Look in `stall_s`."""
        asyncio.get_running_loop().call_later(self.stall_s, self.look)

    def look(self) -> None:
        """Stop, look again later, or abort (see the module docstring)."""
        transport = self.transport
        if transport.is_closing():
            return
        left = transport.get_write_buffer_size()
        if left == 0:
            return
        if self.left is not None and left >= self.left:
            log.warning(
                "client of %s read nothing of its answer for %gs ([server] request_timeout_s) "
                "with %d bytes still to send: connection dropped",
                self.path,
                self.stall_s,
                left,
            )
            transport.abort()
            return
        self.left = left
        self.start()
