"""The worker process on its own: ready line, API key, clean exits, clear failures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lollms_llamacpp.serve import WorkerServer
from lollms_llamacpp.worker import ALIAS


def call(url: str, key: str | None, body: dict[str, object] | None = None) -> tuple[int, str]:
    """POST `body` (or GET) with an optional bearer key; (status, text)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serves_with_its_key_only(tiny_models: Path) -> None:
    """Health is public; completions need the key the worker got on stdin."""
    with WorkerServer(tiny_models / "tiny.gguf") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert call(f"{server.url}/health", None)[0] == 200
        body = {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        assert call(f"{server.url}/v1/chat/completions", None, body)[0] == 401
        assert call(f"{server.url}/v1/chat/completions", "wrong", body)[0] == 401
        status, text = call(f"{server.url}/v1/chat/completions", server.api_key, body)
        assert status == 200, text
        answer = json.loads(text)
        assert answer["choices"][0]["finish_reason"] == "length"
        assert answer["usage"]["completion_tokens"] == 4
        assert server.process is not None
        assert server.api_key not in str(server.process.args)


@pytest.mark.parametrize("how", ["sigterm", "stdin-eof"])
def test_exits_cleanly(tiny_models: Path, how: str) -> None:
    """SIGTERM or its parent closing stdin ends the worker with status 0."""
    server = WorkerServer(tiny_models / "tiny.gguf").start()
    process = server.process
    assert process is not None and process.stdin is not None
    if how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        process.stdin.close()
    assert process.wait(15) == 0


def worker(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a worker that should fail at once."""
    return subprocess.run(
        [sys.executable, "-m", "lollms_llamacpp.worker", *args],
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unloadable_model_fails_with_a_message(tmp_path: Path) -> None:
    """A file that is no model: exit status 1 and a message naming the file."""
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF garbage")
    result = worker("--model", str(bad))
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "bad.gguf" in result.stderr
    assert "LOLLMS_WORKER_READY" not in result.stdout


def test_bad_extra_parameter_fails_with_a_message(tiny_models: Path) -> None:
    """An unknown CommonParams attribute in --extra: exit status 2, the name in the message."""
    result = worker("--model", str(tiny_models / "tiny.gguf"), "--extra", '{"no_such_knob": 1}')
    assert result.returncode == 2
    assert "no_such_knob" in result.stderr
