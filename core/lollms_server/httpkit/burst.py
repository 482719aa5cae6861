"""A streamed response that writes the pieces sent in one burst together.

A stream's pieces often come several at a time: one upstream packet holds many chunks, and under
load a backlog of them is ready when the task runs. Written one by one, each costs a chunked
frame, a trip through aiohttp's writer and a send() system call. `BurstResponse.send` writes the
first piece of a burst at once and keeps the ones that follow until the event loop runs again,
then writes them as one: the loop runs again exactly when the sending task waits for more, so
nothing sent is held back while the sender waits. A piece the client should not wait for (the
first text after a stream's opening event) is written at once by `flush()`.

The headers go out with the first piece, and the pieces held at the end with the body's last
bytes: a stream of one burst is one write, not three.

A client that stops reading would hold its write (and the generation behind it, with its model's
slot) forever: with `stall_s`, a write still waiting on the client after that long aborts the
connection, which ends the stream as a client disconnect. One timer per response keeps it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

MAX_HELD = 64  # pieces held in one burst before they are written without waiting for its end


class ClientGone(Exception):
    """The client closed the connection while we were writing."""


class BurstResponse(web.StreamResponse):
    """A StreamResponse whose `send` coalesces the pieces of a burst into one write."""

    def __init__(
        self, *, headers: dict[str, str], headers_now: bool = False, stall_s: float | None = None
    ) -> None:
        super().__init__(headers=headers)
        # aiohttp's StreamResponse writes its headers at prepare(), web.Response with its body:
        # a face prepares once its first piece is ready, so they go out together
        self._send_headers_immediately = headers_now
        self._held: list[bytes] = []
        self._in_burst = False
        self._flusher: asyncio.Task[None] | None = None
        self._lost: BaseException | None = None
        self._stall_s = stall_s
        self._writing_since: float | None = None  # loop time the write under way began
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Start the response, and the stall watchdog when `stall_s` is set."""
        writer = await super().prepare(request)
        if self._stall_s is not None and self._watchdog is None:
            self._transport = request.transport
            self._watchdog = asyncio.get_running_loop().call_later(self._stall_s, self._watch)
        return writer

    async def send(self, piece: bytes) -> None:
        """Write `piece` after those sent before it; ClientGone once the client has left."""
        if self._keep(piece) or len(self._held) >= MAX_HELD:
            await self._flush()

    def hold(self, piece: bytes) -> None:
        """Keep `piece` for the next write, at the latest when the loop runs again (a stream's
        opening event, which the first text follows at once)."""
        self._keep(piece)

    def _keep(self, piece: bytes) -> bool:
        """Hold `piece` until its burst ends; True when it starts the burst."""
        if self._lost is not None:
            raise ClientGone() from self._lost
        self._held.append(piece)
        if self._in_burst:
            return False
        self._in_burst = True
        asyncio.get_running_loop().call_soon(self._burst_over)
        return True

    async def flush(self) -> None:
        """Write what is held now; ClientGone once the client has left."""
        if self._held or self._flusher is not None:
            await self._flush()

    async def write_eof(self, data: bytes = b"") -> None:
        """End the body, in one write with what is held."""
        if self._flusher is not None:
            await self._flusher  # it says nothing: a lost client fails the write below
        held, self._held = self._held, []
        self._writing_since = self._now()
        try:
            await super().write_eof(b"".join((*held, data)) if held else data)
        finally:
            self._writing_since = None
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def _burst_over(self) -> None:
        """The loop ran again: the sender waits, so write what it left (in a task of its own)."""
        self._in_burst = False
        if self._held and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_held())

    async def _flush(self) -> None:
        """Write every held piece, after a write already under way."""
        if self._flusher is not None:
            await self._flusher
        if self._lost is not None:
            raise ClientGone() from self._lost
        await self._write_held()

    async def _flush_held(self) -> None:
        try:
            await self._write_held()
        except ClientGone:
            pass  # the next send says so
        finally:
            self._flusher = None

    async def _write_held(self) -> None:
        while self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            self._writing_since = self._now()
            try:
                await self.write(data)
            except (ConnectionResetError, ConnectionError, RuntimeError) as exc:
                self._lost = exc
                self._held.clear()
                raise ClientGone() from exc
            finally:
                self._writing_since = None

    def _now(self) -> float | None:
        return asyncio.get_running_loop().time() if self._stall_s is not None else None

    def _watch(self) -> None:
        """Abort the connection when a write waited `stall_s`; else look again when the
        write under way (or the next one) could have."""
        transport, stall_s = self._transport, self._stall_s
        self._watchdog = None
        if transport is None or stall_s is None or transport.is_closing():
            return  # the connection is gone: its handler has ended or is ending
        loop = asyncio.get_running_loop()
        since = self._writing_since
        if since is not None and loop.time() - since >= stall_s:
            transport.abort()  # the client took nothing for stall_s: it counts as gone
            return
        self._watchdog = loop.call_at((since or loop.time()) + stall_s, self._watch)
