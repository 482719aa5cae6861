"""BurstResponse on a real aiohttp server: the headers go out with the first piece; the pieces
of one burst go out in one write after the first, in order, and the last ones with the end of
the body; the first piece of a burst and the pieces held when the sender waits reach the client
while the sender waits; a client that left is ClientGone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web

from lollms_server.httpkit.burst import MAX_HELD, BurstResponse, ClientGone


class CountingResponse(BurstResponse):
    """Records each write that reaches the connection's transport (one send() each)."""

    def __init__(self, *, headers_now: bool = False) -> None:
        super().__init__(headers={"Content-Type": "text/plain"}, headers_now=headers_now)
        self.writes: list[bytes] = []

    async def prepare(self, request: web.BaseRequest) -> Any:
        transport = request.transport
        assert transport is not None
        write, writelines = transport.write, transport.writelines

        def counted(data: Any) -> None:
            self.writes.append(bytes(data))
            write(data)

        def counted_lines(lines: Iterable[Any]) -> None:
            lines = list(lines)
            self.writes.append(b"".join(lines))
            writelines(lines)

        transport.write, transport.writelines = counted, counted_lines  # type: ignore[method-assign]
        return await super().prepare(request)


def payload(write: bytes) -> bytes:
    """The body bytes of one write: headers and chunked framing taken off."""
    if write.startswith(b"HTTP/1.1 "):
        write = write.partition(b"\r\n\r\n")[2]
    body = b""
    while write:
        size, _, rest = write.partition(b"\r\n")
        length = int(size, 16)
        body += rest[:length]
        write = rest[length + 2 :]
    return body


async def serve(aiohttp_client: Any, handler: Any) -> Any:
    app = web.Application()
    app.router.add_get("/", handler)
    return await aiohttp_client(app)


async def test_a_burst_is_its_first_piece_then_one_write(aiohttp_client: Any) -> None:
    seen: list[CountingResponse] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = CountingResponse()
        seen.append(response)
        await response.prepare(request)
        for index in range(30):  # nothing here lets the loop run: one burst
            await response.send(b"%d\n" % index)
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    body = await (await client.get("/")).text()
    assert body.split() == [str(index) for index in range(30)]
    first, rest = seen[0].writes  # the headers with the first piece; the rest with the end
    assert first.startswith(b"HTTP/1.1 200 ") and payload(first) == b"0\n"
    assert payload(rest) == b"".join(b"%d\n" % index for index in range(1, 30))
    assert rest.endswith(b"\r\n0\r\n\r\n")


async def test_a_long_burst_is_written_every_max_held_pieces(aiohttp_client: Any) -> None:
    seen: list[CountingResponse] = []
    count = 3 * MAX_HELD + 5

    async def handler(request: web.Request) -> web.StreamResponse:
        response = CountingResponse()
        seen.append(response)
        await response.prepare(request)
        for index in range(count):
            await response.send(b"%d\n" % index)
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    body = await (await client.get("/")).text()
    assert body.split() == [str(index) for index in range(count)]
    counts = [payload(write).count(b"\n") for write in seen[0].writes]
    assert counts == [1, MAX_HELD, MAX_HELD, MAX_HELD, 4]


async def test_what_was_sent_reaches_the_client_while_the_sender_waits(
    aiohttp_client: Any,
) -> None:
    """The sender waits for the client to have read each burst: held pieces must not wait for
    the next send (a deadlock would time out here)."""
    got_first, got_third = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = BurstResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.send(b"one\n")
        await asyncio.wait_for(got_first.wait(), 5)
        await response.send(b"two\n")
        await response.send(b"three\n")  # held: written when the loop runs again
        await asyncio.wait_for(got_third.wait(), 5)
        await response.send(b"four\n")
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    response = await client.get("/")
    assert await asyncio.wait_for(response.content.readline(), 5) == b"one\n"
    got_first.set()
    assert await asyncio.wait_for(response.content.readline(), 5) == b"two\n"
    assert await asyncio.wait_for(response.content.readline(), 5) == b"three\n"
    got_third.set()
    assert await response.content.read() == b"four\n"


async def test_sending_to_a_client_that_left_is_client_gone() -> None:
    """With handler cancellation off, as aiohttp's default is: the handler is not cancelled when
    its client leaves, so its next sends must say so."""
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = BurstResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(2000):
                await response.send(b"x" * 1024)
                await response.send(b"y" * 1024)  # held, written by the flusher task
                await asyncio.sleep(0.005)
        except ClientGone:
            outcome.set_result("gone")
        else:
            outcome.set_result("finished")
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"http://127.0.0.1:{port}/")
            await response.content.readexactly(1024)
            response.close()
        assert await asyncio.wait_for(outcome, 10) == "gone"
    finally:
        await runner.cleanup()


async def test_flush_writes_what_is_held_without_waiting_for_the_loop(aiohttp_client: Any) -> None:
    counts: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = CountingResponse()
        await response.prepare(request)
        response.hold(b"opening\n")
        await response.send(b"first text\n")
        counts.append(len(response.writes))  # held: the loop has not run
        await response.flush()
        counts.append(len(response.writes))  # written, still without the loop running
        await response.send(b"more\n")
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    assert await (await client.get("/")).text() == "opening\nfirst text\nmore\n"
    assert counts == [0, 1]


async def test_a_held_piece_is_written_when_the_loop_runs(aiohttp_client: Any) -> None:
    """What `hold` keeps reaches the client while the sender waits, with no send after it."""
    got: asyncio.Event = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = BurstResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        response.hold(b"opening\n")
        await asyncio.wait_for(got.wait(), 5)
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    response = await client.get("/")
    assert await asyncio.wait_for(response.content.readline(), 5) == b"opening\n"
    got.set()
    assert await response.content.read() == b""


async def test_headers_now_writes_them_at_prepare(aiohttp_client: Any) -> None:
    """A stream that may wait before its first piece (the pages') shows its status at once."""
    seen: list[CountingResponse] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = CountingResponse(headers_now=True)
        seen.append(response)
        await response.prepare(request)
        await response.send(b"late\n")
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    assert await (await client.get("/")).text() == "late\n"
    headers, *body = seen[0].writes  # then the piece, then the end
    assert headers.startswith(b"HTTP/1.1 200 ") and payload(headers) == b""
    assert [payload(write) for write in body] == [b"late\n", b""]
