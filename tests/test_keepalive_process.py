"""Keep-alive after a refused request, against a real server process: an answer given before
the body arrived closes the connection (nothing reads the rest), so it must say so; clients
(httpx, the OpenAI SDK) otherwise send their next request on a connection being closed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from lollms_server.testing.process import ServerProcess, lollms_process

BODY = b'{"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}'
BAD_KEY = "lollms_0123456789ab_" + "x" * 43


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that needs a key from everyone, with one echo instance."""
    folder = tmp_path_factory.mktemp("keepalive")
    config = '[security]\nlocal_access = false\n[bindings.echo]\ntype = "echo"\n'
    with lollms_process(folder, config) as running:
        yield running


def head_then_wait(port: int) -> tuple[bytes, bytes]:
    """Send a POST's head only, read the answer; then whatever follows once the body is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: api.example\r\n"
            f"Authorization: Bearer {BAD_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        try:
            sock.sendall(BODY + b"GET /api/v1/health HTTP/1.1\r\nHost: api.example\r\n\r\n")
            after = sock.recv(65536)
        except OSError as exc:
            after = repr(exc).encode()
    return answer, after


def test_an_answer_before_the_body_says_it_closes(server: ServerProcess) -> None:
    """Before: a 401 without `Connection: close`, then the server closed the connection."""
    port = int(server.url.rsplit(":", 1)[1])
    answer, after = head_then_wait(port)
    head = answer.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 401"), head
    if not after.startswith(b"HTTP/1.1 200"):  # the connection was not kept: it must say so
        assert "\r\nconnection: close" in head, (head, after)


def test_httpx_after_a_refusal_never_meets_a_closed_connection(server: ServerProcess) -> None:
    """A refused POST then a GET on the same pool, 200 times (before: 2-3% ReadError)."""
    errors: list[str] = []
    with httpx.Client(base_url=server.url, headers={"Host": "api.example"}, timeout=10) as client:
        for _ in range(200):
            refused = client.post("/v1/chat/completions", content=BODY,
                                  headers={"Authorization": f"Bearer {BAD_KEY}"})  # fmt: skip
            assert refused.status_code == 401
            try:
                assert client.get("/api/v1/health").status_code == 200
            except httpx.TransportError as exc:
                errors.append(repr(exc))
    assert errors == []
