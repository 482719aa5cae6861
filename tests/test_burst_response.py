"""BurstResponse on a real aiohttp server: the pieces of one burst go out in one write after
the first, in order; the first piece of a burst and the pieces held when the sender waits
reach the client while the sender waits; a client that left is ClientGone."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from lollms_server.httpkit.burst import MAX_HELD, BurstResponse, ClientGone


class CountingResponse(BurstResponse):
    """Counts the writes that reach aiohttp's payload writer."""

    def __init__(self) -> None:
        super().__init__(headers={"Content-Type": "text/plain"})
        self.writes: list[bytes] = []

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        await super().write(data)


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
    assert seen[0].writes == [b"0\n", b"".join(b"%d\n" % index for index in range(1, 30))]


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
    assert [len(write.split()) for write in seen[0].writes] == [1, MAX_HELD, MAX_HELD, MAX_HELD, 4]


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
        await response.send(b"opening\n")
        await response.send(b"first text\n")
        counts.append(len(response.writes))  # held: the loop has not run
        await response.flush()
        counts.append(len(response.writes))  # written, still without the loop running
        await response.send(b"more\n")
        await response.write_eof()
        return response

    client = await serve(aiohttp_client, handler)
    assert await (await client.get("/")).text() == "opening\nfirst text\nmore\n"
    assert counts == [1, 2]
