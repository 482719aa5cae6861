"""The upstream client against a real local aiohttp server with scripted answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lollms_server.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    NotSupported,
    RateLimited,
)
from lollms_server.httpkit.error_middleware import error_body
from lollms_server.resilience import FALLBACK_REMAINS, RetryPolicy, parse_retry_after
from lollms_server.testing import free_port
from lollms_server.upstream import Upstream

KEY = "sk-test-SECRET-0123456789"
FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=5)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Script:
    """A scripted OpenAI-ish server: hit counts per path and what each path answers."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.auth: list[str | None] = []
        self.stream_closed = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        routes = {
            "/429-then-ok": self.rate_limited_once,
            "/503-twice": self.unavailable_twice,
            "/always-503": self.always_unavailable,
            "/cut-stream": self.cut_stream,
            "/long-stream": self.long_stream,
            "/stalled-stream": self.stalled_stream,
            "/stream": self.stream,
            "/redirect": self.redirect,
            "/elsewhere": self.ok,
            "/leaky-401": self.leaky_unauthorized,
            "/model-404": self.model_not_found,
            "/bad-400": self.bad_request,
            "/overflow-400": self.overflow,
            "/slow": self.slow,
            "/ok": self.ok,
            "/long-retry-after": self.long_retry_after,
            "/endless": self.endless,
            "/declared-huge": self.declared_huge,
        }
        for path, handler in routes.items():
            app.router.add_route("*", path, self.counted(path, handler))
        return app

    def counted(self, path: str, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.hits[path] += 1
            self.auth.append(request.headers.get("Authorization"))
            return await handler(request)

        return wrapped

    async def ok(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "n": self.hits[request.path]})

    async def rate_limited_once(self, request: web.Request) -> web.Response:
        if self.hits[request.path] == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "1"}
            )
        return await self.ok(request)

    async def unavailable_twice(self, request: web.Request) -> web.Response:
        if self.hits[request.path] <= 2:
            return web.json_response({"error": {"message": "loading"}}, status=503)
        return await self.ok(request)

    async def always_unavailable(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "down for good"}}, status=503)

    async def long_retry_after(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "quota"}}, status=429, headers={"Retry-After": "3600"}
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": a comment line\r\n\r\n")
        await response.write(b'data: {"n": 1}\r\n\r\n')
        await response.write(b'data: {"n":\ndata: 2}\n\n')
        await response.write(b"data: [DONE]\n\n")
        return response

    async def cut_stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"n": 1}\n\n')
        await response.write(b'data: {"n": 2}\n\n')
        assert request.transport is not None
        request.transport.close()  # the server dies mid-stream
        return response

    async def long_stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n in range(1000):
                await response.write(f'data: {{"n": {n}}}\n\n'.encode())
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            self.stream_closed.set()
            raise
        return response

    async def stalled_stream(self, request: web.Request) -> web.StreamResponse:
        """Two events, then nothing for 5 s (a backend that froze mid-answer)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"n": 1}\n\n')
        await asyncio.sleep(0.1)
        await response.write(b'data: {"n": 2}\n\n')
        with contextlib.suppress(ConnectionError):
            await asyncio.sleep(5)
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def leaky_unauthorized(self, request: web.Request) -> web.Response:
        sent = request.headers.get("Authorization", "")
        message = f"Incorrect API key provided: {sent.removeprefix('Bearer ')}"
        return web.json_response({"error": {"message": message}}, status=401)

    async def model_not_found(self, request: web.Request) -> web.Response:
        body = {"error": {"message": "The model `nope` does not exist", "code": "model_not_found"}}
        return web.json_response(body, status=404)

    async def overflow(self, request: web.Request) -> web.Response:
        """llama.cpp's answer to a prompt longer than its context (its exact body)."""
        error = {
            "code": 400,
            "message": "request (2082 tokens) exceeds the available context size "
            "(2048 tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 2082,
            "n_ctx": 2048,
        }
        return web.json_response({"error": error}, status=400)

    async def bad_request(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "temperature is too hot"}}, status=400)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return await self.ok(request)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        """A JSON answer that never ends (chunked, no length): 64 KiB every millisecond."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"output": "')
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b"A" * 65536)
                await asyncio.sleep(0.001)
        return response

    async def declared_huge(self, request: web.Request) -> web.StreamResponse:
        """An answer that says it is 64 GiB long, then sends a few bytes and waits."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 64 << 30
        await response.prepare(request)
        await response.write(b'{"a": "')
        await asyncio.sleep(5)
        return response


@pytest.fixture
async def server(aiohttp_server: Any) -> tuple[Script, TestServer]:
    """A scripted server on a free local port."""
    script = Script()
    served: TestServer = await aiohttp_server(script.app())
    return script, served


def client(served: TestServer, **kwargs: Any) -> Upstream:
    """An Upstream of `served` with the test key and fast retries."""
    options: dict[str, Any] = {"api_key": KEY, "retry": FAST, **kwargs}
    return Upstream("inst", str(served.make_url("")), **options)


async def test_429_then_200_waits_retry_after(server: tuple[Script, TestServer]) -> None:
    """A 429 with Retry-After: 1 is retried after about a second, then succeeds."""
    script, served = server
    upstream = client(served)
    started = time.monotonic()
    answer = await upstream.get_json("/429-then-ok")
    await upstream.close()
    assert answer == {"ok": True, "n": 2}
    assert time.monotonic() - started >= 0.9
    assert script.auth == [f"Bearer {KEY}"] * 2


async def test_503_twice_then_200(server: tuple[Script, TestServer]) -> None:
    """Two 503s are retried; the third attempt answers."""
    script, served = server
    upstream = client(served)
    assert (await upstream.post_json("/503-twice", {"x": 1}))["n"] == 3
    await upstream.close()
    assert script.hits["/503-twice"] == 3


async def test_persistent_503_gives_up_after_the_attempts(
    server: tuple[Script, TestServer],
) -> None:
    """A 503 that never ends raises BackendUnavailable naming the instance, after 3 tries."""
    script, served = server
    upstream = client(served)
    with pytest.raises(BackendUnavailable) as caught:
        await upstream.get_json("/always-503")
    await upstream.close()
    assert script.hits["/always-503"] == 3
    assert caught.value.binding == "inst"
    assert "down for good" in caught.value.message


async def test_retry_after_over_the_cap_is_not_waited(server: tuple[Script, TestServer]) -> None:
    """A Retry-After of an hour fails at once as RateLimited carrying the delay."""
    script, served = server
    upstream = client(served)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await upstream.get_json("/long-retry-after")
    await upstream.close()
    assert time.monotonic() - started < 2
    assert script.hits["/long-retry-after"] == 1
    assert caught.value.retry_after == 3600
    assert caught.value.headers() == {"Retry-After": "3600"}


async def test_sse_events_are_parsed(server: tuple[Script, TestServer]) -> None:
    """Comments are skipped, CRLF and multi-line data handled, `[DONE]` ends the stream."""
    _, served = server
    upstream = client(served)
    events = [event async for event in upstream.stream_events("/stream", {})]
    await upstream.close()
    assert events == [{"n": 1}, {"n": 2}]


async def test_stream_cut_midway_is_not_retried(server: tuple[Script, TestServer]) -> None:
    """A stream that breaks after two events raises BackendUnavailable and is not replayed."""
    script, served = server
    upstream = client(served)
    seen: list[dict[str, Any]] = []
    with pytest.raises(BackendUnavailable) as caught:
        async for event in upstream.stream_events("/cut-stream", {}):
            seen.append(event)
    await upstream.close()
    assert seen == [{"n": 1}, {"n": 2}]
    assert script.hits["/cut-stream"] == 1
    assert caught.value.binding == "inst"


async def test_closing_a_stream_closes_the_connection(server: tuple[Script, TestServer]) -> None:
    """aclose() after one event makes the server see the client leave."""
    script, served = server
    upstream = client(served)
    events = upstream.stream_events("/long-stream", {})
    assert await anext(events) == {"n": 0}
    await events.aclose()
    await asyncio.wait_for(script.stream_closed.wait(), timeout=5)
    await upstream.close()


async def test_redirects_are_not_followed(server: tuple[Script, TestServer]) -> None:
    """A 302 is an error; the target is never requested (the key never travels on)."""
    script, served = server
    upstream = client(served)
    with pytest.raises(BackendError, match="redirect"):
        await upstream.get_json("/redirect")
    await upstream.close()
    assert script.hits["/elsewhere"] == 0


@pytest.mark.parametrize("path", ["/endless", "/declared-huge"])
async def test_an_answer_over_max_answer_bytes_is_refused_not_buffered(
    server: tuple[Script, TestServer], path: str
) -> None:
    """A whole answer past the cap is a 502 naming the instance, read no further (an endless
    or 3 GB node answer used to be buffered whole: 6 GB of gateway RSS)."""
    _, served = server
    upstream = client(served, max_answer_bytes=1 << 20)
    for call in (upstream.post_for_bytes(path, {}), upstream.post_json(path, {})):
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"answered over 1048576 bytes") as caught:
            await call
        assert caught.value.binding == "inst" and time.monotonic() - started < 3
    await upstream.close()


async def test_key_never_in_errors_or_logs(
    server: tuple[Script, TestServer], caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that echoes the key back gets it masked in the error and the logs."""
    _, served = server
    caplog.set_level(logging.DEBUG)
    upstream = client(served)
    with pytest.raises(BackendError) as caught:
        await upstream.post_json("/leaky-401", {})
    with pytest.raises(BackendUnavailable):
        await upstream.get_json("/always-503")
    await upstream.close()
    error = caught.value
    assert error.status == 502 and error.details == {"upstream_status": 401}
    everything = json.dumps(error.to_dict()) + str(error) + repr(upstream) + caplog.text
    assert KEY not in everything
    assert "***" in repr(upstream)
    assert "always-503" in caplog.text  # the retries were logged, without the key


async def test_status_mapping(server: tuple[Script, TestServer]) -> None:
    """404 about a model is ModelNotFound, a missing route NotSupported, 400 InvalidRequest."""
    _, served = server
    upstream = client(served)
    with pytest.raises(ModelNotFound, match="does not exist"):
        await upstream.post_json("/model-404", {})
    with pytest.raises(NotSupported, match="/no-such-route"):
        await upstream.post_json("/no-such-route", {})
    with pytest.raises(InvalidRequest, match="temperature is too hot") as caught:
        await upstream.post_json("/bad-400", {})
    await upstream.close()
    assert caught.value.status == 400 and caught.value.binding == "inst"


async def test_context_overflow_is_context_length_exceeded(
    server: tuple[Script, TestServer],
) -> None:
    """A prompt over the backend's context is OpenAI's `context_length_exceeded` (code and
    param), which LangChain and pydantic-ai read to trim the conversation; it was a plain
    `invalid_request` they took for any other 400."""
    _, served = server
    upstream = client(served)
    with pytest.raises(InvalidRequest) as caught:
        await upstream.post_json("/overflow-400", {})
    await upstream.close()
    status, body = error_body("openai", caught.value)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["param"] == "messages" and "2048 tokens" in body["error"]["message"]
    assert "prompt is too long" in body["error"]["message"]  # what LangChain's check reads


async def test_read_timeout_is_backend_timeout(server: tuple[Script, TestServer]) -> None:
    """No answer within read_timeout_s is a BackendTimeout (504), not a hang."""
    _, served = server
    upstream = client(served, read_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        await upstream.get_json("/slow")
    await upstream.close()
    assert time.monotonic() - started < 3


async def test_stream_that_stalls_is_backend_timeout(server: tuple[Script, TestServer]) -> None:
    """A stream that stops sending for read_timeout_s mid-answer is a BackendTimeout after
    the events it did send; the same client then still bounds a slow whole answer (the
    connection's own read timer comes back for the next request)."""
    _, served = server
    upstream = client(served, read_timeout_s=0.3)
    got: list[Any] = []
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as caught:
        async for event in upstream.stream_events("/stalled-stream", {}):
            got.append(event["n"])
    assert time.monotonic() - started < 3
    assert got == [1, 2]
    assert "stopped sending within 0.3s" in caught.value.message
    for _ in range(2):  # the first may reuse the stream's connection
        with pytest.raises(BackendTimeout):
            await upstream.get_json("/slow")
    await upstream.close()


async def test_stream_slower_than_the_limit_in_total_goes_on(
    server: tuple[Script, TestServer],
) -> None:
    """read_timeout_s bounds each wait between packets, not the whole stream: events every
    50 ms for 0.6 s under a 0.2 s limit all arrive."""
    _, served = server
    upstream = client(served, read_timeout_s=0.2)
    got = []
    async with contextlib.aclosing(upstream.stream_events("/long-stream", {})) as events:
        async for event in events:
            got.append(event["n"])
            if len(got) == 12:
                break
    await upstream.close()
    assert got == list(range(12))


async def test_dead_port_is_unavailable_quickly() -> None:
    """Nobody listening: BackendUnavailable naming the instance, after quick retries."""
    upstream = Upstream("inst", f"http://127.0.0.1:{free_port()}", api_key=KEY, retry=FAST)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await upstream.get_json("/models")
    await upstream.close()
    assert time.monotonic() - started < 3
    assert caught.value.binding == "inst" and "inst" in caught.value.message
    assert KEY not in caught.value.message


async def test_a_refused_connection_is_retried_only_without_a_fallback() -> None:
    """Nobody listening: retried after the backoff when nothing else could serve, raised at
    once while a route's next target remains (FALLBACK_REMAINS)."""
    slow = RetryPolicy(attempts=2, backoff_s=0.3, max_backoff_s=0.3)
    upstream = Upstream("inst", f"http://127.0.0.1:{free_port()}", retry=slow)
    took = []
    for remains in (False, True):
        token = FALLBACK_REMAINS.set(remains)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await upstream.get_json("/models")
        took.append(time.monotonic() - started)
        FALLBACK_REMAINS.reset(token)
    await upstream.close()
    assert took[0] >= 0.3 and took[1] < 0.15, took


def test_parse_retry_after() -> None:
    """Delta seconds, HTTP dates and garbage."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 10) == 10.0


def test_userinfo_is_not_shown() -> None:
    """Credentials inside base_url never reach the repr."""
    upstream = Upstream("inst", "http://user:hunter2@127.0.0.1:9/v1")
    assert "hunter2" not in repr(upstream)
    assert "hunter2" not in upstream.scrub("failed at http://user:hunter2@127.0.0.1:9/v1")


async def test_credentials_in_the_base_url_are_basic_auth_unless_a_key_is_set(
    server: tuple[Script, TestServer],
) -> None:
    script, served = server
    with_user = str(served.make_url("")).replace("http://", "http://proxyuser:proxypw@")
    basic = Upstream("inst", with_user, retry=FAST)
    both = Upstream("inst", with_user, api_key=KEY, retry=FAST)
    try:
        assert (await basic.get_json("/ok"))["ok"] is True
        assert (await both.get_json("/ok"))["ok"] is True  # aiohttp refused the pair before
    finally:
        await basic.close()
        await both.close()
    assert script.auth[-2].startswith("Basic ")
    assert script.auth[-1] == f"Bearer {KEY}"
    assert "proxypw" not in repr(basic) and "proxypw" not in basic.url_for_logs
