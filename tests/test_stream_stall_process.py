"""A stream client that stops reading cannot hold a model: against a real server process whose
one echo slot a never-reading client takes, another key's request is served once
`request_timeout_s` has passed, on every face that streams."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from test_security_process import SERVER, create_key, server_env, wait_up
from test_stall_process import exchange

from lollms_server.testing import free_port

REQUEST_TIMEOUT_S = 2
CONFIG = f"""
[server]
request_timeout_s = {REQUEST_TIMEOUT_S}
max_token_ids = 10_000_000
[security]
local_access = false
[resources]
queue_timeout_s = 60
[bindings.echo]
type = "echo"
delay_ms = 0
max_concurrent = 1
"""
PROMPT = "a " * 100_000  # echoed token by token: far more than the socket buffers hold
BODIES = {
    "/v1/chat/completions": {"model": "echo/echo", "max_tokens": 10_000_000,
                             "messages": [{"role": "user", "content": PROMPT}]},
    "/api/chat": {"model": "echo/echo", "options": {"num_predict": 10_000_000},
                  "messages": [{"role": "user", "content": PROMPT}]},
    "/api/v1/generate": {"binding_name": "echo", "model_name": "echo",
                         "parameters": {"max_tokens": 10_000_000},
                         "input_data": [{"type": "text", "data": PROMPT}]},
}  # fmt: skip


@dataclass
class Server:
    """A running server process and two user keys."""

    port: int
    stalling: str
    other: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server: one echo slot, a short request timeout, no local access."""
    data_dir = tmp_path_factory.mktemp("stream-stall") / "data"
    data_dir.mkdir()
    (data_dir / "lollms.toml").write_text(CONFIG, encoding="utf-8")
    port = free_port()
    env = server_env(data_dir, port)
    keys = create_key(env), create_key(env)
    process = subprocess.Popen(
        SERVER, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_up(f"http://127.0.0.1:{port}/api/v1/health", process)
        yield Server(port, *keys)
    finally:
        process.terminate()
        process.wait(timeout=10)


def head(server: Server, path: str, key: str, length: int) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("path", list(BODIES))
def test_a_client_that_stops_reading_frees_its_slot(server: Server, path: str) -> None:
    """Before, the write waited on the client forever and held echo's only slot."""
    body = json.dumps({**BODIES[path], "stream": True}).encode()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    try:
        stalled.sendall(head(server, path, server.stalling, len(body)) + body)
        time.sleep(0.5)  # the stream has the slot and its writes wait on the client
        small = json.dumps({"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]})
        started = time.monotonic()
        reply = exchange(
            server.port,
            head(server, "/v1/chat/completions", server.other, len(small)),
            [small.encode()],
            timeout=REQUEST_TIMEOUT_S * 5,
        )
        assert reply.status == 200, reply.body[:300]
        assert time.monotonic() - started < REQUEST_TIMEOUT_S * 3
        stalled.settimeout(10)
        received = b""
        with contextlib.suppress(ConnectionResetError):  # dropped with data it never read
            while chunk := stalled.recv(1 << 20):  # what was written before it was dropped
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK"), received[:300]
    finally:
        stalled.close()


def test_a_client_that_never_reads_a_whole_answer_is_dropped(server: Server) -> None:
    """A non-streamed answer far bigger than the socket buffers (4 MB of text tokenized by echo:
    ~16 MB of JSON) to a client that reads nothing: the connection is dropped after
    request_timeout_s without progress. Before, the server kept the answer (and the
    connection) for as long as the client kept it open."""
    body = json.dumps(
        {"binding_name": "echo", "model_name": "echo", "text": "a" * 4_000_000}
    ).encode()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    try:
        stalled.sendall(head(server, "/api/v1/tokenize", server.stalling, len(body)) + body)
        time.sleep(REQUEST_TIMEOUT_S * 3)  # two looks at the server's buffer, no progress
        stalled.settimeout(10)
        received, reset = b"", False
        try:
            while chunk := stalled.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            reset = True
        except TimeoutError:
            pass  # the connection is still open: the whole answer was waiting for the client
        headers, _, rest = received.partition(b"\r\n\r\n")
        assert headers.startswith(b"HTTP/1.1 200 OK"), received[:300]
        length = int(next(line.split(b":")[1] for line in headers.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))  # fmt: skip
        assert length > 8_000_000
        assert reset or len(rest) < length, "the whole answer was kept for the client"
    finally:
        stalled.close()
