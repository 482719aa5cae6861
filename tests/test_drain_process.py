"""Graceful drain against a real server process: after SIGTERM a stream in flight streams to its
end, `/api/v1/ready` answers 503 on the listener that stays open, a new generation on every face
(pages included) gets 503 + Retry-After, and the process exits 0; past `drain_timeout_s` it
stops anyway."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from lollms_server.testing.process import ServerProcess, lollms_process

CONFIG = """
[bindings.echo]
type = "echo"
delay_ms = 150
"""
WORDS = [f"w{i}" for i in range(24)]  # echo/slow: 24 tokens x 150 ms, about 3.6 s


def connect(server: ServerProcess) -> http.client.HTTPConnection:
    """A new connection to the server."""
    url = urlsplit(server.url)
    return http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)


def call(
    server: ServerProcess, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    """One request on its own connection: status, headers, JSON body."""
    conn = connect(server)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, payload, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, dict(reply.headers), json.loads(reply.read() or b"null")
    finally:
        conn.close()


def form_post(server: ServerProcess, path: str, fields: dict[str, str]) -> http.client.HTTPResponse:
    """A page form post (the playground, as from a browser without htmx)."""
    conn = connect(server)
    conn.request(
        "POST", path, urlencode(fields), {"Content-Type": "application/x-www-form-urlencoded"}
    )
    return conn.getresponse()


def open_stream(
    server: ServerProcess,
) -> tuple[http.client.HTTPConnection, Iterator[dict[str, Any]]]:
    """A streamed lollms generate on echo/slow, and its SSE events as they come."""
    conn = connect(server)
    body = {
        "input_data": [{"type": "text", "data": " ".join(WORDS)}],
        "binding_name": "echo",
        "model_name": "slow",
        "stream": True,
    }
    conn.request("POST", "/api/v1/generate", json.dumps(body), {"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 200, reply.read()

    def events() -> Iterator[dict[str, Any]]:
        for line in reply:
            if line.startswith(b"data: "):
                yield json.loads(line[len(b"data: ") :])

    return conn, events()


HI = [{"role": "user", "content": "hi"}]
NEW_GENERATIONS = [
    ("/api/v1/generate", {"input_data": [{"type": "text", "data": "hi"}], "binding_name": "echo"}),
    ("/v1/chat/completions", {"model": "echo/echo", "messages": HI}),
    ("/api/chat", {"model": "echo/echo", "messages": HI, "stream": False}),
    ("/api/generate", {"model": "echo/echo", "prompt": "hi", "stream": True}),
]


def test_sigterm_drains_then_exits_0(tmp_path: Path) -> None:
    with lollms_process(tmp_path, CONFIG, server_settings={"drain_timeout_s": 60}) as server:
        status, _, body = call(server, "GET", "/api/v1/ready")
        assert status == 200 and body["ready"] is True, body
        conn, events = open_stream(server)
        first = [next(events) for _ in range(3)]  # info, then the first tokens: in flight
        assert [e["type"] for e in first][1:] == ["chunk", "chunk"], first
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (ready := call(server, "GET", "/api/v1/ready"))[0] == 200:
            assert time.monotonic() < deadline, "ready still 200 5 s after SIGTERM"
            time.sleep(0.05)
        assert ready[0] == 503 and ready[2] == {"ready": False, "draining": True}, ready
        for path, request in NEW_GENERATIONS:
            status, headers, body = call(server, "POST", path, request)
            assert status == 503, (path, status, body)
            assert int(headers["Retry-After"]) >= 1, (path, headers)
            assert "shutting down" in json.dumps(body), (path, body)
        page = form_post(server, "/playground/chat", {"prompt": "hi", "model": "echo/echo"})
        assert page.status == 503 and int(page.headers["Retry-After"]) >= 1, page.status
        assert b"shutting down" in page.read()
        assert server.process.poll() is None, "exited with a stream in flight"
        rest = list(events)
        conn.close()
        assert server.process.wait(timeout=30) == 0, server.log()[-3000:]
    kinds = [e["type"] for e in first + rest]
    assert "error" not in kinds and kinds[-1] == "final", kinds
    text = "".join(e.get("content") or "" for e in first + rest if e["type"] == "chunk")
    assert text.split() == WORDS


def test_drain_stops_at_its_time_limit(tmp_path: Path) -> None:
    slow = CONFIG.replace("delay_ms = 150", "delay_ms = 2000")  # 24 tokens: about 48 s
    with lollms_process(tmp_path, slow, server_settings={"drain_timeout_s": 1}) as server:
        conn, events = open_stream(server)
        next(events)
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=20)  # the drain limit plus shutdown, not 48 s
        except subprocess.TimeoutExpired:
            pytest.fail("the drain outlived drain_timeout_s")
        conn.close()
        assert code == 0, server.log()[-3000:]
