"""Hostile input against a real server process: keys with non-UTF-8 bytes, credentials inside
configured URLs (masked wherever settings or logs show them), control characters in text logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lollms_server.testing import free_port

SERVER = [sys.executable, "-m", "lollms_server.cli"]
SECRETS = ("pw-SECRET1", "SECRET2", "SECRET3")


@dataclass
class Running:
    """A server process: its port, environment and output file."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A server logging text, with an OpenAI-compatible instance whose URL holds credentials
    (it points at a closed port: calling it fails and logs the URL)."""
    data = tmp_path_factory.mktemp("hostile")
    port, closed = free_port(), free_port()
    base_url = (
        f"http://alice:pw-SECRET1@127.0.0.1:{closed}/v1?token=SECRET2&api_key=SECRET3&region=eu"
    )
    (data / "lollms.toml").write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nlog_format = "text"\n\n'
        '[bindings.echo]\ntype = "echo"\n\n'
        f'[bindings.remote]\ntype = "openai"\nbase_url = "{base_url}"\n'
        'models = ["gpt-x"]\n\n'
        '[defaults]\nttt = "echo"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOLLMS_")}
    env["LOLLMS_DATA_DIR"] = str(data)
    log_path = data / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(SERVER, env=env, stdout=log, stderr=log)
    running = Running(port, env, log_path, process)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert process.poll() is None, running.log()
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def raw_request(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client library cleans them) and read the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def local_get(port: int, path: str) -> str:
    """GET as this machine (local access, no key)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
        return str(reply.read().decode("utf-8"))


def test_keys_with_non_utf8_bytes_are_401_and_audited(server: Running) -> None:
    before = json.loads(local_get(server.port, "/api/v1/audit?event=auth_failed&limit=1000"))
    sent = (
        b"X-API-Key: lollms_\xff\xfe",
        b"Authorization: Bearer lollms_\xc3\x28abc",
        b"Cookie: lollms_key=lollms_\xff\xfe",
        b"X-API-Key: \x80\x81",
    )
    for header in sent:
        reply = raw_request(
            server.port,
            b"GET /api/v1/list_models HTTP/1.1\r\nHost: remote.example\r\n"
            b"Connection: close\r\n" + header + b"\r\n\r\n",
        )
        status_line, _, rest = reply.partition(b"\r\n")
        assert status_line.split()[1] == b"401", (header, reply[:300])
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"]["type"] == "unauthorized"
    after = json.loads(local_get(server.port, "/api/v1/audit?event=auth_failed&limit=1000"))
    # audited (repeated failures of one address and reason share one row with a count)
    new = [e for e in after["events"] if e["id"] not in {b["id"] for b in before["events"]}]
    assert any(e["detail"]["reason"] == "invalid API key" for e in new), after
    assert "unhandled error" not in server.log()


def test_url_credentials_are_masked_in_listings_pages_config_and_logs(server: Running) -> None:
    listing = local_get(server.port, "/api/v1/list_bindings")
    page = local_get(server.port, "/bindings")
    shown = subprocess.run(
        [*SERVER, "config", "show"], env=server.env, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout  # fmt: skip
    body = json.dumps({"model": "remote/gpt-x", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError):  # the upstream's port is closed
        urllib.request.urlopen(request, timeout=60)
    for where, text in (("list_bindings", listing), ("/bindings", page), ("config show", shown)):
        for secret in SECRETS:
            assert secret not in text, f"{secret} shown by {where}"
        assert "***@127.0.0.1" in text and "region=eu" in text, where
    log = server.log()
    assert "cannot be reached" in log  # the failure was logged, with its URL
    for secret in SECRETS:
        assert secret not in log, f"{secret} in the log"


def test_text_log_escapes_control_characters_a_client_sent(server: Running) -> None:
    path = "/api/v1/nothing%0Aforged-line%1B[2J%0D%00end"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=30)
    deadline = time.monotonic() + 10
    while "forged-line" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)  # the access line is written after the response
    log = server.log()
    assert "\\nforged-line\\x1b[2J\\r\\x00end" in log
    assert not any(line.startswith("forged-line") for line in log.splitlines())
    assert "\x1b" not in log and "\x00" not in log


def test_requests_aiohttp_cannot_parse_log_no_traceback(server: Running) -> None:
    """Each is a 400 and no log line at the default level; before, an error with a traceback
    (637 bytes of log per request, 1.6 MB a second from one client)."""
    before = len(server.log())
    for request in (
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ):
        assert raw_request(server.port, request).startswith(b"HTTP/1.0 400 ")
    assert local_get(server.port, "/api/v1/health")  # what the server logs arrives after them
    assert server.log()[before:].count("\n") <= 1, server.log()[before:]


def test_answers_do_not_name_the_python_and_aiohttp_versions(server: Running) -> None:
    """Before: `Server: Python/3.11 aiohttp/3.14.5` on every answer, anonymous ones included,
    which tells a scanner which aiohttp advisories to try; the version the operator chose to
    publish is in `/api/v1/health`."""
    for path in ("/api/v1/health", "/v1/models", "/no-such-route", "/login"):
        reply = raw_request(
            server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        head = reply.split(b"\r\n\r\n")[0].decode("latin-1").lower()
        assert "\r\nserver: lollms-server\r\n" in head + "\r\n", (path, head)
        assert "aiohttp" not in head and "python" not in head, (path, head)
