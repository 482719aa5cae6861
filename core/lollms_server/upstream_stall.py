"""The stall limit of a streamed upstream answer, with one loop timer per stream.

aiohttp's `sock_read` timeout cancels and re-arms a loop timer on every packet it receives
(2-4 µs each, a streamed answer's tokens arrive one packet apiece). Once a stream's headers
are in, `StallTimer` switches that timer off for the rest of the answer and keeps the same
limit itself: the reader notes the time of each piece, and the one timer, when it fires,
either fails the stream (nothing came for `timeout_s`) or re-arms for the latest piece's
deadline. The connection's next request gets aiohttp's own timer back (aiohttp sets it per
request).
"""

from __future__ import annotations

import asyncio

import aiohttp


class StallTimer:
    """Fails `response`'s body with a SocketTimeoutError after `timeout_s` without a piece."""

    def __init__(self, response: aiohttp.ClientResponse, timeout_s: float) -> None:
        self.content = response.content
        self.timeout_s = timeout_s
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.handle: asyncio.TimerHandle | None = None
        protocol = response.connection.protocol if response.connection else None
        if protocol is not None and timeout_s:
            protocol.read_timeout = None  # from the next packet on: ours, not one per packet
            self.handle = self.loop.call_at(self.last + timeout_s, self._check)

    def progress(self) -> None:
        """A piece arrived."""
        self.last = self.loop.time()

    def _check(self) -> None:
        due = self.last + self.timeout_s
        if self.loop.time() >= due:
            self.handle = None
            self.content.set_exception(
                aiohttp.SocketTimeoutError("Timeout on reading data from socket")
            )
        else:
            self.handle = self.loop.call_at(due, self._check)

    def close(self) -> None:
        """The stream is over: no more checks."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
