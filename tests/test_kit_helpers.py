"""The kit's fixture helpers: ports, waiting for HTTP, time limits, starting bindings."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lollms_server.builtin import tiny_media
from lollms_server.builtin.echo import EchoBinding
from lollms_server.errors import BackendUnavailable, ConfigError
from lollms_server.testing import (
    build_binding,
    free_port,
    started_binding,
    wait_for_http,
    wait_for_http_async,
    within,
)
from lollms_server.testing.media import normalized_mime, png_size, sniff


@pytest.fixture
def http_url() -> Iterator[str]:
    """A plain HTTP server in a thread, answering 200 on every path."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), http.server.SimpleHTTPRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_free_port_can_be_bound() -> None:
    """free_port() names a port a server can listen on."""
    port = free_port()
    assert 1024 <= port <= 65535
    server = http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    server.server_close()


def test_wait_for_http_sees_a_server(http_url: str) -> None:
    """wait_for_http() returns True once the URL answers."""
    assert wait_for_http(http_url, timeout_s=5)


def test_wait_for_http_gives_up_in_time() -> None:
    """wait_for_http() returns False for a port nobody listens on, after about timeout_s."""
    started = time.monotonic()
    assert not wait_for_http(f"http://127.0.0.1:{free_port()}/", timeout_s=0.5, interval=0.1)
    assert time.monotonic() - started < 3


async def test_wait_for_http_async() -> None:
    """The async variant sees a live server and gives up on a dead port."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", ok)
    async with TestServer(app) as server:
        assert await wait_for_http_async(str(server.make_url("/health")), timeout_s=5)
    dead = f"http://127.0.0.1:{free_port()}/"
    assert not await wait_for_http_async(dead, timeout_s=0.3, interval=0.1)


async def test_within_fails_a_slow_call_and_keeps_other_timeouts() -> None:
    """within() turns its own time limit into a test failure; a binding's TimeoutError stays."""
    with pytest.raises(pytest.fail.Exception, match=r"slow thing did not finish within 0\.05s"):
        await within(0.05, asyncio.sleep(5), "slow thing")

    async def times_out() -> None:
        raise TimeoutError("the binding's own")

    with pytest.raises(TimeoutError, match="the binding's own"):
        await within(5, times_out(), "x")
    assert await within(1, asyncio.sleep(0, result=7), "fast") == 7


def test_build_binding_validates_settings() -> None:
    """Settings go through the binding's ConfigSchema, unknown keys rejected."""
    binding = build_binding(EchoBinding, "e", {"delay_ms": 5})
    assert binding.config["delay_ms"] == 5 and binding.config["down"] is False  # defaults filled
    with pytest.raises(ConfigError, match="nope"):
        build_binding(EchoBinding, "e", {"nope": 1})


async def test_started_binding_without_request_raises_when_down() -> None:
    """Outside a fixture (no request), a backend that stays down raises BackendUnavailable."""
    with pytest.raises(BackendUnavailable, match=r"still down after 0\.3s"):
        async with started_binding(EchoBinding, "e", {"down": True}, timeout_s=0.3):
            pytest.fail("must not get here")  # pragma: no cover


async def test_started_binding_runs_startup_and_shutdown() -> None:
    """startup() before the body and shutdown() after it, even when the body fails."""
    calls: list[str] = []

    class Recording(EchoBinding):
        async def startup(self) -> None:
            calls.append("startup")

        async def shutdown(self) -> None:
            calls.append("shutdown")

    with pytest.raises(RuntimeError):
        async with started_binding(Recording, "e") as binding:
            assert calls == ["startup"] and binding.instance_name == "e"
            raise RuntimeError("body failed")
    assert calls == ["startup", "shutdown"]


def test_media_sniffing() -> None:
    """Magic bytes name the format; mime aliases fold; PNG size is read from IHDR."""
    png = tiny_media.png(tiny_media.gradient(12, 7, 3))
    assert sniff(png) == "image/png" and png_size(png) == (12, 7)
    assert sniff(tiny_media.tone_wav([440.0], 0.01)) == "audio/wav"
    assert sniff(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"OggS...") == "audio/ogg" and sniff(b"not media") is None
    assert normalized_mime("Audio/X-WAV; codec=1") == "audio/wav"
    assert normalized_mime("image/jpg") == "image/jpeg"
