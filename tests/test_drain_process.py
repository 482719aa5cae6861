"""Graceful drain against a real server process: after SIGTERM a stream in flight streams to its
end, `/api/v1/ready` answers 503 on the listener that stays open, a new generation on every face
(pages included) gets 503 + Retry-After, and the process exits 0; past `drain_timeout_s` what is
still in flight is cut (a stream ends with an error event, an unanswered request gets 503) and
the process exits 0 at once."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
EXIT_SLACK_S = 3.0  # past drain_timeout_s: the stop, the shutdown, the interpreter's exit


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
        assert call(server, "GET", "/api/v1/status")[2]["draining"] is False
        conn, events = open_stream(server)
        first = [next(events) for _ in range(3)]  # info, then the first tokens: in flight
        assert [e["type"] for e in first][1:] == ["chunk", "chunk"], first
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (ready := call(server, "GET", "/api/v1/ready"))[0] == 200:
            assert time.monotonic() < deadline, "ready still 200 5 s after SIGTERM"
            time.sleep(0.05)
        assert ready[0] == 503 and ready[2] == {"ready": False, "draining": True}, ready
        # a gateway tells this planned stop from a failure by the status; Prometheus by a gauge
        assert call(server, "GET", "/api/v1/status")[2]["draining"] is True
        metrics = connect(server)
        metrics.request("GET", "/metrics")
        assert b"\nlollms_draining 1.0\n" in metrics.getresponse().read()
        metrics.close()
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
        signalled = time.monotonic()
        try:
            code = server.process.wait(timeout=20)  # the drain limit plus shutdown, not 48 s
        except subprocess.TimeoutExpired:
            pytest.fail("the drain outlived drain_timeout_s")
        exited_s = time.monotonic() - signalled
        rest = list(events)
        conn.close()
        assert code == 0, server.log()[-3000:]
    assert exited_s < 1 + EXIT_SLACK_S, exited_s
    errors = [e for e in rest if e["type"] == "error"]
    assert errors and errors[0]["metadata"]["error"]["type"] == "draining", rest
    assert "shutting down" in errors[0]["content"] and rest[-1]["type"] == "final", rest


UPSTREAM = '[bindings.echo]\ntype = "echo"\ndelay_ms = 1000\n'  # echo/slow: 1 s a word
PROXY = """
[bindings.remote]
type = "openai"
base_url = "@UPSTREAM@/v1"
models = ["echo/slow"]
capabilities = ["ttt", "stream"]
"""


def proxied_chat(server: ServerProcess, *, stream: bool) -> http.client.HTTPResponse:
    """An OpenAI chat completion on the slow upstream through the openai binding (about 20 s)."""
    conn = connect(server)
    body = {
        "model": "remote/echo/slow",
        "stream": stream,
        "messages": [{"role": "user", "content": " ".join(WORDS[:20])}],
    }
    conn.request(
        "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
    )
    return conn.getresponse()


def read_to_end(reply: http.client.HTTPResponse) -> bytes:
    """The rest of a body; what came before the connection closed, if it was cut short."""
    try:
        return reply.read()
    except http.client.IncompleteRead as exc:
        return exc.partial


def test_drain_limit_cuts_a_proxied_stream_and_a_whole_answer(tmp_path: Path) -> None:
    """At `drain_timeout_s` a stream from a slow upstream ends with the OpenAI error event and a
    whole answer still awaited gets 503 `draining` with Retry-After; the exit follows at once."""
    with lollms_process(tmp_path / "upstream", UPSTREAM) as upstream:
        proxy = PROXY.replace("@UPSTREAM@", upstream.url)
        settings = {"drain_timeout_s": 1}
        with (
            lollms_process(tmp_path / "proxy", proxy, server_settings=settings) as server,
            ThreadPoolExecutor(1) as pool,
        ):
            whole = pool.submit(lambda: proxied_chat(server, stream=False))
            reply = proxied_chat(server, stream=True)
            assert reply.status == 200, reply.read()
            assert b"content" in reply.readline()  # the first word: the stream is in flight
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            rest = read_to_end(reply)
            answered = whole.result(timeout=30)
            whole_body = json.loads(answered.read())
            code = server.process.wait(timeout=30)
            exited_s = time.monotonic() - signalled
            assert code == 0, server.log()[-3000:]
    events = [line[len(b"data: ") :] for line in rest.splitlines() if line.startswith(b"data: ")]
    assert events and events[-1] == b"[DONE]", rest
    error = json.loads(events[-2])["error"]
    assert error["code"] == "draining" and "shutting down" in error["message"], error
    assert answered.status == 503 and int(answered.headers["Retry-After"]) >= 1, whole_body
    assert whole_body["error"]["code"] == "draining", whole_body
    assert exited_s < settings["drain_timeout_s"] + EXIT_SLACK_S, exited_s
